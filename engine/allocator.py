"""Polars' memory allocator, set for a night before Polars is loaded.

Polars allocates through its own jemalloc, configured by the `_RJEM_MALLOC_CONF` environment
variable, which jemalloc reads once, when Polars is loaded. On import, Polars sets the variable
to its own setting, which returns freed memory to the kernel after 0.5 s (dirty pages) and 1 s
(muzzy pages), followed by any value already there (later options win). A night frees and
allocates the same few gigabytes query after query, so with Polars' setting many of its
allocations are fresh pages that the kernel must fault in and zero: on the 10M night,
`/usr/bin/time -v` counted 17-18 million minor page faults and 77-86 s of system time, a
quarter of the night's CPU.

NIGHT keeps freed pages for 30 s before returning them, so that the next queries reuse them.
First 5 s: on the 10M night, alternated with Polars' setting, 7 million faults instead of 18
million and 111 s wall instead of 138 s (benchmarks/RESULTS.md, "Polars' allocator"). Then
30 s, on a later engine: alternated with 5 s, 3.7-3.9 million faults instead of 6.5-6.7
million, 25-27 s of system time instead of 38-39, 212 CPU-s instead of 228 (medians), for
1.1 GB more peak RSS (7.4 GB against 6.4); 120 s saved little more. The national night's peak,
where freed pages sit beside the person-key pass's NumPy arrays (which jemalloc cannot reuse),
rose from 12.26 to 12.67 GB, within its 16 GB (benchmarks/RESULTS.md, "Freed memory kept 30 s").

It leaves transparent huge pages to the kernel's policy. Asking jemalloc for them
(`thp:always`) was about even on the first machine measured and costly on the next one: there
the kernel zeroed 2 MB for each of 13,700 huge-page faults a 10M night (2,600 without), `perf`
put a fifth of the night's CPU in the kernel's page zeroing, and the night took 131 s instead
of 111 s (median of 5 and 3 alternated runs).

An operator's own `_RJEM_MALLOC_CONF` wins. The value that Polars sets in a parent Python
process, inherited by `kyufu`, is not an operator's: what follows Polars' setting in it is.
`kyufu` calls `configure()` before anything imports Polars; once Polars is loaded, setting the
variable changes nothing.
"""

from __future__ import annotations

import os
import sys

VARIABLE = "_RJEM_MALLOC_CONF"
NIGHT = "background_thread:true,dirty_decay_ms:30000,muzzy_decay_ms:30000"
POLARS_SETTING = "dirty_decay_ms:500,muzzy_decay_ms:1000"  # polars/__init__.py, Polars 2.1.0


def setting() -> str:
    """What `configure()` sets: the operator's value, else NIGHT."""
    operator = os.environ.get(VARIABLE, "").removeprefix(POLARS_SETTING).lstrip(",")
    return operator or NIGHT


def configure() -> bool:
    """Set the allocator for this process (`setting()`). False when Polars is already loaded, so
    the setting cannot take effect in this process."""
    os.environ[VARIABLE] = setting()
    return "polars" not in sys.modules
