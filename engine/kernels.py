"""Numba kernels: plain loops over NumPy arrays, no Polars, no nulls.

Each kernel has a pure-Python twin in tests/engine/test_kernels.py that it must agree with.
Signatures are explicit, so everything compiles at import and the nightly run has no first-call
surprises. Inputs are declared read-only: Polars hands out zero-copy read-only views.
"""

from __future__ import annotations

import numpy as np
from numba import boolean, float64, int64, njit, types

Int64In = types.Array(types.int64, 1, "C", readonly=True)

MY_NUMBER_WEIGHTS = np.array([6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2], dtype=np.int64)  # research §3.1


@njit(int64(int64), cache=True, nogil=True)
def _check_digit(base):
    """The My Number check digit of an 11-digit base: walk its digits from the least
    significant, weights 2,3,4,5,6,7,2,3,4,5,6 (the official formula's Q_n)."""
    s = 0
    for k in range(11):
        s += (k + 2 if k < 6 else k - 4) * (base % 10)
        base //= 10
    return ((-s) % 11) % 10


@njit(boolean[:](Int64In), cache=True, nogil=True)
def my_number_is_valid(numbers):
    """True where the value is a 12-digit My Number (0 ≤ n < 10^12) whose check digit is right.

    Check digit (省令 第5条; stdnum.jp.in_): s = Σ w_i·d_i over the first 11 digits with weights
    6,5,4,3,2,7,6,5,4,3,2; check = (-s) mod 11 mod 10.
    """
    out = np.empty(numbers.shape[0], dtype=np.bool_)
    for i in range(numbers.shape[0]):
        n = numbers[i]
        out[i] = 0 <= n < 1_000_000_000_000 and n % 10 == _check_digit(n // 10)
    return out


@njit(int64[:](Int64In), cache=True, nogil=True)
def my_number_check_digits(bases):
    """The check digit for each 11-digit base (0 ≤ base < 10^11); -1 where out of range."""
    out = np.empty(bases.shape[0], dtype=np.int64)
    for i in range(bases.shape[0]):
        base = bases[i]
        out[i] = _check_digit(base) if 0 <= base < 100_000_000_000 else -1
    return out


@njit(boolean[:](Int64In), cache=True, nogil=True)
def municipality_code_is_valid(codes):
    """True where a 6-digit JIS X 0402 code's last digit is its check digit (research §7.7).

    cd = (11 − (Σ w_i·d_i mod 11)) mod 10 with weights 6,5,4,3,2 over the first five digits.
    """
    out = np.empty(codes.shape[0], dtype=np.bool_)
    for i in range(codes.shape[0]):
        c = codes[i]
        if c < 0 or c >= 1_000_000:
            out[i] = False
            continue
        check = c % 10
        base = c // 10
        s = 0
        for k in range(5):
            d = base % 10
            base //= 10
            s += (k + 2) * d
        out[i] = check == (11 - s % 11) % 10
    return out


# --- string similarity on Arrow string buffers ---------------------------------------------------

UInt8In = types.Array(types.uint8, 1, "C", readonly=True)


@njit(cache=True, nogil=True, inline="always")
def _decode_utf8(data, start, stop, out):
    """Decode the UTF-8 bytes data[start:stop] into code points in out; return how many.

    Arrow guarantees valid UTF-8 in string arrays, so the lead byte gives the sequence length.
    A sequence cut off by `stop` (only possible with malformed input) decodes as U+FFFD and ends
    the row: nothing is ever read outside data[start:stop].
    """
    n = 0
    i = start
    while i < stop:
        b = np.int64(data[i])
        # a sequence too short for its lead byte fails its own test and all later ones
        if b < 0x80:
            cp = b
            i += 1
        elif b < 0xE0 and i + 2 <= stop:
            cp = ((b & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F)
            i += 2
        elif b < 0xF0 and i + 3 <= stop:
            cp = (
                ((b & 0x0F) << 12)
                | ((np.int64(data[i + 1]) & 0x3F) << 6)
                | (np.int64(data[i + 2]) & 0x3F)
            )
            i += 3
        elif b >= 0xF0 and i + 4 <= stop:
            cp = (
                ((b & 0x07) << 18)
                | ((np.int64(data[i + 1]) & 0x3F) << 12)
                | ((np.int64(data[i + 2]) & 0x3F) << 6)
                | (np.int64(data[i + 3]) & 0x3F)
            )
            i += 4
        else:  # a sequence cut off by stop: malformed input
            out[n] = 0xFFFD
            return n + 1
        out[n] = cp
        n += 1
    return n


@njit(cache=True, nogil=True, inline="always")
def _jaro_winkler(a, la, b, lb, matched_a, matched_b, prefix_scale, max_prefix):
    """Jaro-Winkler of the code points a[:la] and b[:lb]; matched_* are scratch flags."""
    if la == 0 and lb == 0:
        return 1.0
    if la == 0 or lb == 0:
        return 0.0
    window = max(la, lb) // 2 - 1
    if window < 0:
        window = 0
    matched_a[:la] = False
    matched_b[:lb] = False
    matches = 0
    for i in range(la):
        lo = max(0, i - window)
        hi = min(lb, i + window + 1)
        for j in range(lo, hi):
            if not matched_b[j] and b[j] == a[i]:
                matched_a[i] = True
                matched_b[j] = True
                matches += 1
                break
    if matches == 0:
        return 0.0
    # matched characters read in order on both sides: t = (positions where they differ) / 2
    out_of_order = 0
    j = 0
    for i in range(la):
        if matched_a[i]:
            while not matched_b[j]:
                j += 1
            if a[i] != b[j]:
                out_of_order += 1
            j += 1
    m = float(matches)
    jaro = (m / la + m / lb + (m - out_of_order / 2.0) / m) / 3.0
    prefix = 0
    for i in range(min(max_prefix, la, lb)):
        if a[i] != b[i]:
            break
        prefix += 1
    return jaro + prefix * prefix_scale * (1.0 - jaro)


@njit(
    [
        float64[:](Int64In, UInt8In, Int64In, UInt8In, float64, int64),
        # numba types a left-out default argument as Omitted(value): declare those calls too
        float64[:](Int64In, UInt8In, Int64In, UInt8In, float64, types.Omitted(4)),
        float64[:](Int64In, UInt8In, Int64In, UInt8In, types.Omitted(0.1), types.Omitted(4)),
    ],
    cache=True,
    nogil=True,
)
def jaro_winkler_pairs(offsets_a, data_a, offsets_b, data_b, prefix_scale=0.1, max_prefix=4):
    """Jaro-Winkler similarity of row i of a with row i of b, by Unicode code points.

    a and b are Arrow (large_)string buffers: row i is the UTF-8 bytes data[offsets[i]:offsets[i+1]].
    Match window floor(max(len)/2) - 1, transpositions counted as half the out-of-order matches,
    Winkler boost over a common prefix of up to `max_prefix` code points. Both empty → 1.0, one
    empty → 0.0. Nulls are the caller's business (the buffers carry no validity).
    """
    n = offsets_a.shape[0] - 1
    if n < 0 or offsets_b.shape[0] != offsets_a.shape[0]:
        raise ValueError("jaro_winkler_pairs: a and b need offsets of the same length >= 1")
    if prefix_scale < 0.0 or max_prefix < 0 or prefix_scale * max_prefix > 1.0:
        raise ValueError("jaro_winkler_pairs: need prefix_scale >= 0, max_prefix >= 0 and "
                         "prefix_scale * max_prefix <= 1")
    longest = 0  # in bytes, an upper bound on code points
    for i in range(n):
        longest = max(longest, offsets_a[i + 1] - offsets_a[i], offsets_b[i + 1] - offsets_b[i])
    code_points_a = np.empty(longest, dtype=np.int64)
    code_points_b = np.empty(longest, dtype=np.int64)
    matched_a = np.empty(longest, dtype=np.bool_)
    matched_b = np.empty(longest, dtype=np.bool_)
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        la = _decode_utf8(data_a, offsets_a[i], offsets_a[i + 1], code_points_a)
        lb = _decode_utf8(data_b, offsets_b[i], offsets_b[i + 1], code_points_b)
        out[i] = _jaro_winkler(code_points_a, la, code_points_b, lb, matched_a, matched_b,
                               prefix_scale, max_prefix)
    return out


# --- clustering ---------------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def _find_root(parent, x):
    """Root of x, halving the path on the way (every other node points to its grandparent)."""
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(cache=True, nogil=True, inline="always")
def _bucket_starts(node_ids):
    """(starts, shift): ids whose (id − node_ids[0]) >> shift is b sit in node_ids[starts[b]:starts[b+1]].

    At most len(node_ids) + 1 buckets. For evenly spread ids a lookup then costs a few cache
    misses, where a binary search over millions of ids costs about twenty (np.searchsorted with
    random keys was 4× slower end to end at 1M edges). Skewed ids only make buckets bigger.
    """
    n = node_ids.shape[0]
    span = np.uint64(node_ids[n - 1] - node_ids[0])  # wraps to the right unsigned difference
    shift = np.uint64(0)
    while (span >> shift) >= np.uint64(n):
        shift += np.uint64(1)
    starts = np.empty(np.int64(span >> shift) + 2, dtype=np.int64)
    bucket = 0
    for i in range(n):
        key = np.int64(np.uint64(node_ids[i] - node_ids[0]) >> shift)
        while bucket <= key:
            starts[bucket] = i
            bucket += 1
    starts[bucket:] = n
    return starts, shift


@njit(cache=True, nogil=True, inline="always")
def _node_index(node_ids, starts, shift, value):
    """Index of value in the sorted node_ids, or -1 if it is not there."""
    if value < node_ids[0] or value > node_ids[node_ids.shape[0] - 1]:
        return -1
    key = np.int64(np.uint64(value - node_ids[0]) >> shift)
    lo = starts[key]
    hi = starts[key + 1]
    while lo < hi:  # binary search inside the bucket
        mid = (lo + hi) >> 1
        if node_ids[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    if lo == node_ids.shape[0] or node_ids[lo] != value:
        return -1
    return lo


@njit(int64[:](Int64In, Int64In, Int64In), cache=True, nogil=True)
def connected_components(node_ids, left, right):
    """Smallest node id in each node's component (union-find by minimum, with path halving).

    node_ids must be sorted and unique; every edge (left[e], right[e]) must join two of them.
    The result is aligned with node_ids.
    """
    n = node_ids.shape[0]
    for i in range(1, n):
        if node_ids[i] <= node_ids[i - 1]:
            raise ValueError("connected_components: node_ids must be sorted and unique")
    if left.shape[0] != right.shape[0]:
        raise ValueError("connected_components: left and right must have the same length")
    out = np.empty(n, dtype=np.int64)
    if n == 0:
        if left.shape[0] > 0:
            raise ValueError("connected_components: an edge references a node id not in node_ids")
        return out
    starts, shift = _bucket_starts(node_ids)
    # parent[x] <= x always holds: a root is the smallest index of its set, and both the union
    # (larger root under smaller root) and path halving only ever point a node further down.
    parent = np.arange(n)
    for e in range(left.shape[0]):
        a = _node_index(node_ids, starts, shift, left[e])
        b = _node_index(node_ids, starts, shift, right[e])
        if a < 0 or b < 0:
            raise ValueError("connected_components: an edge references a node id not in node_ids")
        root_a = _find_root(parent, a)
        root_b = _find_root(parent, b)
        if root_a < root_b:
            parent[root_b] = root_a
        elif root_b < root_a:
            parent[root_a] = root_b
    # in increasing order, parent[x] < x is already resolved to its root
    for x in range(n):
        p = parent[x]
        out[x] = node_ids[x] if p == x else out[p]
    return out


# --- Mynapoint points ----------------------------------------------------------------------------

BoolIn = types.Array(types.boolean, 1, "C", readonly=True)


@njit(
    types.Tuple((int64[:], int64[:], int64[:], int64[:]))(
        Int64In, BoolIn, Int64In, Int64In, Int64In, Int64In, Int64In, Int64In, int64
    ),
    cache=True,
    nogil=True,
)
def capped_point_changes(person, is_refund, amount, slot, room, net_in, first_in, current_in, rate_percent):
    """(change per event, then each slot's net amount, first points, current points) after one
    night of Mynapoint events under each person's cap (SPEC.md "Mynapoint"; research §2.2).

    Events are sorted by (person, occurred_at, transaction_id). An event is the first grant of an
    earning transaction (is_refund False) or a refund of one (True); `slot[i]` indexes the earning
    transaction it concerns in the slot arrays, whose *_in values come from the state for
    transactions processed on earlier nights (a slot's grant event must precede its refunds).
    `room[i]` is the room left under the cap of event i's person before tonight (cap − granted).

    A grant: floor(rate × amount / 100), limited to the room left (never below 0).
    A refund: net −= refunded amount; points become min(floor(rate × net / 100), first points);
    the difference is clawed back (a negative change) and frees the same room.
    """
    n = person.shape[0]
    change = np.zeros(n, dtype=np.int64)
    net = net_in.copy()
    first = first_in.copy()
    current = current_in.copy()
    left = np.int64(0)
    for i in range(n):
        if i == 0 or person[i] != person[i - 1]:
            left = room[i]
        s = slot[i]
        if is_refund[i]:
            net[s] -= amount[i]
            kept = min(rate_percent * max(net[s], 0) // 100, first[s])
            clawed = max(current[s] - kept, 0)
            current[s] -= clawed
            left += clawed
            change[i] = -clawed
        else:
            granted = max(min(rate_percent * amount[i] // 100, left), 0)
            net[s] = amount[i]
            first[s] = granted
            current[s] = granted
            left -= granted
            change[i] = granted
    return change, net, first, current
