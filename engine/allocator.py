"""Polars' memory allocator, set for a night before Polars is loaded.

Polars allocates through its own jemalloc, configured by the `_RJEM_MALLOC_CONF` environment
variable, which jemalloc reads once, when Polars is loaded. Polars' own setting returns freed
memory to the kernel after 0.5 s (dirty pages) and 1 s (muzzy pages). A night frees and
allocates the same few gigabytes query after query, so with that setting most of its
allocations are fresh pages that the kernel must fault in and zero. On the 10M night,
`/usr/bin/time -v` counted 17.9 million minor page faults and 86 s of system time, a quarter of
the night's CPU (benchmarks/RESULTS.md).

NIGHT keeps freed pages for 5 s before returning them, so that the next queries reuse them. On
the 10M night (benchmarks/RESULTS.md, one run per setting, in one hour): Polars' setting took
203, 210 and 225 s with 11-18 million faults and 57-86 s of system time; NIGHT took 192 s, with
10 million faults and 48 s, and peaked 0.2-0.8 GB higher (6.6 GB). Longer settings save little
more time and cost more memory (60 s: 192 s, 7.9 GB; never returned: 189 s, 9.8 GB).

An operator's own `_RJEM_MALLOC_CONF` wins. `kyufu` calls `configure()` before anything imports
Polars; once Polars is loaded, setting the variable changes nothing.
"""

from __future__ import annotations

import os
import sys

VARIABLE = "_RJEM_MALLOC_CONF"
NIGHT = "background_thread:true,dirty_decay_ms:5000,muzzy_decay_ms:5000"


def configure() -> bool:
    """Set NIGHT unless the operator set the variable. False when Polars is already loaded, so
    the setting cannot take effect in this process."""
    os.environ.setdefault(VARIABLE, NIGHT)
    return "polars" not in sys.modules
