"""Tests and benchmarks run under the allocator setting of a `kyufu` night (engine/allocator.py),
set here, before any test module loads Polars (jemalloc reads it once, when Polars loads)."""

from engine import allocator

allocator.configure()
