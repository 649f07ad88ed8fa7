"""Finding values in a sorted array of ids: a bucket index over the ids' values, then a binary
search inside one small bucket.

The national night's global passes join tens of millions of rows to a sorted column of the
nation (My Number → shard, wallet → shard) without a hash table of the nation. A plain binary
search over 125M ids costs about 27 cache misses per row: np.searchsorted took 11 s for 5M
random ids against 10M (2 µs a row). The bucket index, built in one pass over the ids, costs a
couple of misses; evenly spread ids (My Numbers, counters) put about one id in a bucket, and
skewed ids only make buckets bigger, never a wrong answer.

The twin of `positions` is np.searchsorted (tests/engine/test_sorted_index.py). The same
passes sort, gather and scatter columns of the nation: `stable_argsort`, `take` and `put` do it
on every core, against NumPy's twins.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from numba import njit, prange, types, uint32

Int64In = types.Array(types.int64, 1, "C", readonly=True)


@njit(cache=True, nogil=True, inline="always")
def bucket_starts(ids):
    """(starts, shift): ids whose (id − ids[0]) >> shift is b sit in ids[starts[b]:starts[b+1]].

    `ids` sorted ascending (repeats allowed), not empty. At most len(ids) + 1 buckets.
    """
    n = ids.shape[0]
    span = np.uint64(ids[n - 1] - ids[0])  # wraps to the right unsigned difference
    shift = np.uint64(0)
    while (span >> shift) >= np.uint64(n):
        shift += np.uint64(1)
    starts = np.empty(np.int64(span >> shift) + 2, dtype=np.int64)
    bucket = 0
    for i in range(n):
        key = np.int64(np.uint64(ids[i] - ids[0]) >> shift)
        while bucket <= key:
            starts[bucket] = i
            bucket += 1
    starts[bucket:] = n
    return starts, shift


@njit(cache=True, nogil=True, inline="always")
def index_of(ids, starts, shift, value):
    """Index of the first `value` in the sorted `ids`, or -1 if it is not there."""
    if value < ids[0] or value > ids[ids.shape[0] - 1]:
        return -1
    key = np.int64(np.uint64(value - ids[0]) >> shift)
    lo = starts[key]
    hi = starts[key + 1]
    while lo < hi:  # binary search inside the bucket
        mid = (lo + hi) >> 1
        if ids[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    if lo == ids.shape[0] or ids[lo] != value:
        return -1
    return lo


@njit(cache=True, parallel=True)
def _values_at(sorted_ids, values, keys, default, out):
    starts, shift = bucket_starts(sorted_ids)
    for i in prange(keys.shape[0]):
        at = index_of(sorted_ids, starts, shift, keys[i])
        out[i] = values[at] if at >= 0 else default


def values_at(sorted_ids: np.ndarray, values: np.ndarray, keys: np.ndarray, default: int) -> np.ndarray:
    """For each key, values[i] where sorted_ids[i] is its first occurrence, else `default` (in
    values' dtype): `positions`, then the gather, in one pass on every core."""
    sorted_ids = np.ascontiguousarray(sorted_ids, dtype=np.int64)
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    values = np.ascontiguousarray(values)
    if len(values) != len(sorted_ids):
        msg = f"sorted_index.values_at: {len(values)} values for {len(sorted_ids)} ids"
        raise ValueError(msg)
    out = np.empty(len(keys), dtype=values.dtype)
    if len(sorted_ids) == 0:
        out[:] = default
    elif len(keys):
        _values_at(sorted_ids, values, keys, values.dtype.type(default), out)
    return out


def positions(sorted_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each value, the index of its first occurrence in `sorted_ids` (ascending), or -1:
    `values_at` with the positions as the values."""
    return values_at(sorted_ids, np.arange(len(sorted_ids), dtype=np.int64), values, -1)


RADIX_BITS = 11  # 2,048 counters a pass: they stay in the core's cache while rows are scattered
# each pass is cut into this many parts of rows (fewer for small inputs), shared among the cores
RADIX_PARTS, RADIX_PART_ROWS = 8, 65_536


@njit(uint32[::1](Int64In), cache=True, parallel=True)
def _radix_argsort(keys):
    """stable_argsort by least significant digit radix sort over the bits in which the keys
    differ (keys − min): four passes for 12-digit My Numbers. Fewer than 2**32 keys.

    Each pass is shared among the cores: the rows are cut into contiguous parts (RADIX_PARTS);
    each part counts its digits, then scatters its rows from its own start in each digit's range
    (the parts in row order, so equal digits keep their order: the sort stays stable)."""
    n = keys.shape[0]
    order = np.arange(n, dtype=np.uint32)
    if n < 2:
        return order
    low = keys.min()
    span = np.uint64(keys.max() - low)
    bits = 0
    while bits < 64 and (span >> np.uint64(bits)) > np.uint64(0):
        bits += 1
    if bits == 0:
        return order
    digits = (bits + RADIX_BITS - 1) // RADIX_BITS
    size = 1 << RADIX_BITS
    mask = np.uint64(size - 1)
    parts = min(RADIX_PARTS, max(1, n // RADIX_PART_ROWS))
    bounds = np.empty(parts + 1, dtype=np.int64)
    for p in range(parts + 1):
        bounds[p] = n * p // parts
    shifted = np.empty(n, dtype=np.uint64)
    for i in prange(n):
        shifted[i] = np.uint64(keys[i] - low)
    spare_keys = np.empty(n, dtype=np.uint64)
    spare_order = np.empty(n, dtype=np.uint32)
    counts = np.empty((parts, size), dtype=np.int64)
    start = np.empty((parts, size), dtype=np.int64)
    for d in range(digits):
        shift = np.uint64(d * RADIX_BITS)
        for p in prange(parts):  # each part counts the digit over its rows as they lie now
            counts[p, :] = 0
            for i in range(bounds[p], bounds[p + 1]):
                counts[p, np.int64((shifted[i] >> shift) & mask)] += 1
        total = 0
        for b in range(size):  # digit b: part 0's rows, then part 1's, ...
            for p in range(parts):
                start[p, b] = total
                total += counts[p, b]
        for p in prange(parts):
            for i in range(bounds[p], bounds[p + 1]):
                b = np.int64((shifted[i] >> shift) & mask)
                at = start[p, b]
                start[p, b] = at + 1
                spare_keys[at] = shifted[i]
                spare_order[at] = order[i]
        shifted, spare_keys = spare_keys, shifted
        order, spare_order = spare_order, order
    return order


def stable_argsort(keys: np.ndarray) -> np.ndarray:
    """The stable ascending order of `keys` (np.argsort(keys, kind="stable")).

    NumPy's stable argsort of 64-bit keys is a merge sort that finds runs: fast on keys nearly
    in order (3.4 s for 125M counters), slow on random ones (45 s for 125M My Numbers on this
    machine, against 14 s for the radix sort, which needs about 3 GB more at 125M: two copies
    of the keys and of the order). Keys more than 1% out of order go to the radix sort.
    """
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    if len(keys) < 2 or len(keys) >= 2**32 or np.count_nonzero(keys[1:] < keys[:-1]) < len(keys) // 100:
        return np.argsort(keys, kind="stable")
    return _radix_argsort(keys)


SHORT_RUN = 32  # runs of equal first keys up to this long are put in order by insertion


@njit(uint32[::1](Int64In, Int64In, Int64In), cache=True, parallel=True)
def _lexsort3(first, second, third):
    """lexsort: rows in order of (first, second, third), equal rows in row order."""
    order = _radix_argsort(first)
    n = order.shape[0]
    if n < 2:
        return order
    # the other keys in that order, so that each run's sort reads memory in sequence
    by_second = np.empty(n, dtype=np.int64)
    by_third = np.empty(n, dtype=np.int64)
    is_start = np.empty(n, dtype=np.bool_)
    is_start[0] = True
    for i in prange(n):
        row = order[i]
        by_second[i] = second[row]
        by_third[i] = third[row]
        if i > 0:
            is_start[i] = first[row] != first[order[i - 1]]
    starts = np.flatnonzero(is_start)
    runs = starts.shape[0]
    for r in prange(runs):  # each run of equal first keys in order of (second, third)
        lo = starts[r]
        hi = starts[r + 1] if r + 1 < runs else n
        if hi - lo <= SHORT_RUN:
            for i in range(lo + 1, hi):  # insertion: stable, and quick on a few rows
                row, s, t = order[i], by_second[i], by_third[i]
                j = i
                while j > lo and (s < by_second[j - 1] or (s == by_second[j - 1] and t < by_third[j - 1])):
                    order[j], by_second[j], by_third[j] = order[j - 1], by_second[j - 1], by_third[j - 1]
                    j -= 1
                order[j], by_second[j], by_third[j] = row, s, t
        else:  # two stable merge sorts: by the third key, then by the second
            at = np.argsort(by_third[lo:hi], kind="mergesort")
            at = at[np.argsort(by_second[lo:hi][at], kind="mergesort")]
            order[lo:hi] = order[lo:hi][at]
    return order


def lexsort3(first: np.ndarray, second: np.ndarray, third: np.ndarray) -> np.ndarray:
    """The order of the rows by (first, second, third), equal rows in row order:
    np.lexsort((third, second, first)). Int64 keys, fewer than 2**32 rows.

    A radix sort by the first key, then each run of equal first keys in order of the other two
    (short runs by insertion, long ones by merge sort), the runs shared among the cores. 4.6M
    rows, runs of about ten (a person's events): 0.31 s on this machine, against 0.52 s for
    Polars' three-key arg_sort_by (benchmarks/RESULTS.md).
    """
    keys = [np.ascontiguousarray(k, dtype=np.int64) for k in (first, second, third)]
    if len(keys[0]) >= 2**32:
        return np.lexsort(keys[::-1])
    return _lexsort3(*keys)


def ascending(values: np.ndarray) -> np.ndarray:
    """`values` sorted ascending, as np.sort(values) (read-only: the sorted column's own buffer).

    Polars' sort runs on every core: 4.2 s for 125M random int64 on this machine against
    12.9 s for np.sort, which runs on one (benchmarks/RESULTS.md, "Fewer single-threaded passes").
    """
    return pl.Series(values).sort().to_numpy()


def unique(values: np.ndarray) -> np.ndarray:
    """The distinct values, ascending: np.unique(values), by a sort and one comparison.

    NumPy 2.4's np.unique took 60 s for 20M random int64 on this machine, a sort 0.6 s.
    """
    return _distinct(ascending(values))


def repeated(values: np.ndarray) -> np.ndarray:
    """The distinct values that occur more than once, ascending (one sort of the column)."""
    ordered = ascending(values)
    return _distinct(ordered[1:][ordered[1:] == ordered[:-1]])  # still in order: no second sort


def _distinct(ordered: np.ndarray) -> np.ndarray:
    """The first of each run of equal values in an ascending array."""
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


# ---- gathers and scatters on both cores ------------------------------------------------------------
# NumPy's fancy indexing runs on one core and converts the index array first: values[order] of
# 125M random int64 took 4.1-4.5 s on this machine, take 0.9 s (benchmarks/RESULTS.md). The global
# passes of the national night (pipelines/routing.py) do dozens of these over the nation.


@njit(cache=True, parallel=True)
def _take(values, indices, out):
    bad = 0
    n = values.shape[0]
    for i in prange(indices.shape[0]):
        at = np.int64(indices[i])
        if at < 0 or at >= n:
            bad += 1
        else:
            out[i] = values[at]
    return bad


@njit(cache=True, parallel=True)
def _put(out, indices, values):
    bad = 0
    n = out.shape[0]
    for i in prange(indices.shape[0]):
        at = np.int64(indices[i])
        if at < 0 or at >= n:
            bad += 1
        else:
            out[at] = values[i]
    return bad


def _indices(indices: np.ndarray) -> np.ndarray:
    indices = np.ascontiguousarray(indices)
    if indices.dtype.kind not in "iu":
        msg = f"sorted_index: indices must be integers, not {indices.dtype}"
        raise TypeError(msg)
    return indices


def take(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """values[indices] (indices into a 1-D array, none negative), gathered on every core.
    An index out of range raises IndexError, as NumPy's would."""
    values, indices = np.ascontiguousarray(values), _indices(indices)
    out = np.empty(len(indices), dtype=values.dtype)
    if len(indices) and _take(values, indices, out):
        msg = f"sorted_index.take: an index is out of range for {len(values)} values"
        raise IndexError(msg)
    return out


def put(out: np.ndarray, indices: np.ndarray, values: np.ndarray) -> None:
    """out[indices] = values (in place; indices distinct and none negative), on every core.
    An index out of range raises IndexError, as NumPy's would."""
    indices, values = _indices(indices), np.ascontiguousarray(values, dtype=out.dtype)
    if len(indices) != len(values):
        msg = f"sorted_index.put: {len(indices)} indices for {len(values)} values"
        raise ValueError(msg)
    if not out.flags.c_contiguous:
        msg = "sorted_index.put: `out` must be contiguous"
        raise ValueError(msg)
    if len(indices) and _put(out, indices, values):
        msg = f"sorted_index.put: an index is out of range for {len(out)} values"
        raise IndexError(msg)
