"""Numba kernels: plain loops over NumPy arrays, no Polars, no nulls.

Each kernel has a pure-Python twin in tests/engine/test_kernels.py that it must agree with.
Signatures are explicit, so everything compiles at import and the nightly run has no first-call
surprises. Inputs are declared read-only: Polars hands out zero-copy read-only views.
"""

from __future__ import annotations

import numpy as np
from numba import boolean, float64, int64, njit, prange, types

from engine.sorted_index import bucket_starts, index_of

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
    starts, shift = bucket_starts(node_ids)
    # parent[x] <= x always holds: a root is the smallest index of its set, and both the union
    # (larger root under smaller root) and path halving only ever point a node further down.
    parent = np.arange(n)
    for e in range(left.shape[0]):
        a = index_of(node_ids, starts, shift, left[e])
        b = index_of(node_ids, starts, shift, right[e])
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


# --- fuzzy identity: blocks walked in place, only matched pairs kept ------------------------------
# Their twin is the Polars implementation they replaced (tests/identity_reference.py), checked
# against them in tests/engine/test_identity_kernel.py.

# similarity.jaro_winkler's defaults, so the kernel's scores agree with it bit for bit
WINKLER_PREFIX_SCALE = 0.1
WINKLER_MAX_PREFIX = 4
ROW_BITS = 32  # a hashed row keeps its row number in the low bits, the block hash in the high bits
ROW_MASK = (1 << ROW_BITS) - 1
SHARED_PERSON_KEY, SCORABLE, FAMILY_IS_SET = 1, 2, 4  # a row's flags


@njit(cache=True, nogil=True, inline="always")
def _same_points(a, la, b, lb):
    """True when the code points a[:la] and b[:lb] are the same (decoded from valid UTF-8: the
    same strings)."""
    if la != lb:
        return False
    for k in range(la):
        if a[k] != b[k]:
            return False
    return True


@njit(cache=True, nogil=True, inline="always")
def _similar_at_least(a, la, b, lb, matched_a, matched_b, threshold, exact):
    """Jaro-Winkler of the code points a[:la] and b[:lb] (`_jaro_winkler`), or NaN, not
    computed, when it cannot reach `threshold` (and not `exact`). Equal strings score 1.0 at
    once. The bound: with every character of the shorter string matched, in order, Jaro is
    (2 + short / long) / 3, and the Winkler bonus adds at most a prefix of min(4, short); a
    pair of names whose lengths differ that much can never match (ヒロシ and タカユキ)."""
    if la == lb:
        if _same_points(a, la, b, lb):
            return 1.0
    elif not exact and la > 0 and lb > 0:
        short = min(la, lb)
        jaro = (2.0 + short / max(la, lb)) / 3.0
        best = jaro + min(WINKLER_MAX_PREFIX, short) * WINKLER_PREFIX_SCALE * (1.0 - jaro)
        if best < threshold - 1e-9:  # a margin for rounding: never skip a pair that could reach it
            return np.nan
    return _jaro_winkler(a, la, b, lb, matched_a, matched_b, WINKLER_PREFIX_SCALE, WINKLER_MAX_PREFIX)


# blocks are walked in this many strided chunks, each with its own scratch (allocated once per
# chunk, not per block); far more chunks than threads, so threads share the work evenly
BLOCK_CHUNKS = 64


@njit(cache=True, nogil=True, inline="always")
def _same_string(offsets, data, a, b):
    """True when rows a and b of an Arrow string buffer hold the same bytes (the same string)."""
    start_a = offsets[a]
    start_b = offsets[b]
    length = offsets[a + 1] - start_a
    if offsets[b + 1] - start_b != length:
        return False
    for k in range(length):
        if data[start_a + k] != data[start_b + k]:
            return False
    return True


@njit(cache=True, nogil=True, inline="always")
def _fnv1a(h, offsets, data, row):
    """FNV-1a over the bytes of one row of a string buffer, then its length (so that two fields
    cannot slide into each other). int64 arithmetic wraps like the uint64 original."""
    for k in range(offsets[row], offsets[row + 1]):
        h = (h ^ np.int64(data[k])) * 0x100000001B3
    return (h ^ (offsets[row + 1] - offsets[row])) * 0x100000001B3


@njit(cache=True, nogil=True, inline="always")
def _mixed(h):
    """splitmix64's finaliser (logical shifts written for int64): every bit depends on all."""
    h = (h ^ ((h >> 30) & 0x3FFFFFFFF)) * -4658895280553007687
    h = (h ^ ((h >> 27) & 0x1FFFFFFFFF)) * -7723592293110705685
    return h ^ ((h >> 31) & 0x1FFFFFFFF)


@njit(
    types.Tuple((int64[::1], int64[::1]))(Int64In, Int64In, UInt8In, Int64In, UInt8In, BoolIn),
    cache=True,
    nogil=True,
)
def block_hashed_rows(birth_date, sex_offsets, sex_data, key_offsets, key_data, can_meet):
    """(hashed rows, key codes) of one blocking pass, in one pass over the rows.

    key_codes[row]: a small integer naming the row's (sex, block key) exactly (equal codes for
    equal strings, found in a hash table of the distinct pairs); -1 where not `can_meet`.
    Hashed rows: hash(birth date, key code) << 32 | row, for the rows that can meet. Sorted,
    the rows of one block come together, with, rarely, the rows of another block whose 32-bit
    hash collided: `fuzzy_identity_pairs` compares birth dates and key codes themselves.

    Sorting one integer column is several times faster than sorting by the strings, and a
    block only needs its rows together, not in name order. Comparing two integers per row
    instead of the strings made the walk of 3M blocked rows (10M residents) 3 s faster: string
    loops over rows far apart in memory stall on every row.
    """
    n = birth_date.shape[0]
    if n > ROW_MASK:
        raise ValueError("block_hashed_rows: at most 2**32 - 1 rows per call")
    if (can_meet.shape[0] != n or sex_offsets.shape[0] != n + 1
            or key_offsets.shape[0] != n + 1):
        raise ValueError("block_hashed_rows: the columns must have the same length")
    codes = np.full(n, -1, dtype=np.int64)
    hashed = np.empty(n, dtype=np.int64)
    capacity = 1024
    slot_row = np.full(capacity, -1, dtype=np.int64)  # a row holding the slot's strings
    slot_hash = np.empty(capacity, dtype=np.int64)
    slot_code = np.empty(capacity, dtype=np.int64)
    distinct = 0
    m = 0
    for row in range(n):
        if not can_meet[row]:
            continue
        h = _fnv1a(np.int64(-3750763034362895579), sex_offsets, sex_data, row)  # FNV offset basis
        h = _mixed(_fnv1a(h, key_offsets, key_data, row))
        slot = h & (capacity - 1)
        while slot_row[slot] >= 0 and not (
                slot_hash[slot] == h
                and _same_string(sex_offsets, sex_data, slot_row[slot], row)
                and _same_string(key_offsets, key_data, slot_row[slot], row)):
            slot = (slot + 1) & (capacity - 1)
        if slot_row[slot] < 0:
            slot_row[slot] = row
            slot_hash[slot] = h
            slot_code[slot] = distinct
            distinct += 1
        codes[row] = slot_code[slot]
        if 2 * distinct > capacity:  # keep the table at most half full: double it
            grown_row = np.full(2 * capacity, -1, dtype=np.int64)
            grown_hash = np.empty(2 * capacity, dtype=np.int64)
            grown_code = np.empty(2 * capacity, dtype=np.int64)
            for old in range(capacity):
                if slot_row[old] >= 0:
                    new = slot_hash[old] & (2 * capacity - 1)
                    while grown_row[new] >= 0:
                        new = (new + 1) & (2 * capacity - 1)
                    grown_row[new] = slot_row[old]
                    grown_hash[new] = slot_hash[old]
                    grown_code[new] = slot_code[old]
            capacity *= 2
            slot_row, slot_hash, slot_code = grown_row, grown_hash, grown_code
        hashed[m] = (_mixed(birth_date[row] * -7046029254386353131 + codes[row]) << ROW_BITS) | row
        m += 1
    return hashed[:m].copy(), codes


@njit(types.UniTuple(int64[::1], 2)(Int64In), cache=True, nogil=True)
def _block_bounds(hashed_rows):
    """(starts, stops) of every run of two or more equal block hashes in the sorted hashed rows."""
    n = hashed_rows.shape[0]
    starts = np.empty(n // 2 + 1, dtype=np.int64)
    stops = np.empty(n // 2 + 1, dtype=np.int64)
    blocks = 0
    lo = 0
    for k in range(1, n + 1):
        if k < n and (hashed_rows[k] >> ROW_BITS) == (hashed_rows[lo] >> ROW_BITS):
            continue
        if k - lo >= 2:
            starts[blocks] = lo
            stops[blocks] = k
            blocks += 1
        lo = k
    return starts[:blocks].copy(), stops[:blocks].copy()


@njit(float64(Int64In, UInt8In, int64, int64, int64[::1], int64[::1], boolean[::1], boolean[::1]),
      cache=True, nogil=True)
def _scored(offsets, data, a, b, code_points_a, code_points_b, matched_a, matched_b):
    """Jaro-Winkler of row a against row b of one string buffer, a on the left."""
    la = _decode_utf8(data, offsets[a], offsets[a + 1], code_points_a)
    lb = _decode_utf8(data, offsets[b], offsets[b + 1], code_points_b)
    return _jaro_winkler(code_points_a, la, code_points_b, lb, matched_a, matched_b,
                         WINKLER_PREFIX_SCALE, WINKLER_MAX_PREFIX)


# an explicit signature also keeps numba from compiling a copy per literal `write`
@njit(
    types.none(
        int64, int64[::1], int64[::1], Int64In, Int64In, Int64In,  # chunk, blocks, hashed rows, keys
        Int64In, Int64In, Int64In, Int64In, boolean,  # rows, flags; pass-2 rule
        Int64In, UInt8In, Int64In, UInt8In, Int64In, UInt8In,  # family, given, whole name
        float64, float64, int64,  # thresholds, longest name
        boolean, int64[::1], int64[::1], int64[::1],  # write, at, compared, emitted
        int64[::1], int64[::1], float64[::1], float64[::1], float64[::1], boolean[::1],  # output
    ),
    cache=True,
    nogil=True,
)
def _chunk_pairs(chunk, starts, stops, hashed_rows, birth_date, key_codes, person_key, my_number,
                 household_id, flags, skip_equal_family, family_offsets, family_data,
                 given_offsets, given_data, name_offsets, name_data, name_min_similarity,
                 part_min_similarity, longest, write, at, compared, emitted, left, right,
                 similarity, family_similarity, given_similarity, is_matched):
    """Compare the pairs inside blocks chunk, chunk + BLOCK_CHUNKS, ...; per block, set
    compared[block] and emitted[block], and with `write` put its emitted pairs in the output
    arrays from at[block], as row numbers oriented by person key (left smaller).

    Only rows with equal birth dates and key codes meet (a hash collision never joins two
    blocks). `compared` counts the pairs whose rows both have an unshared person key; a pair
    with a shared key (one My Number registered twice) is emitted whether it matches or not, so
    the caller can count it once per person-key pair. Other pairs are emitted only when they
    match. A block's rows are gathered into scratch first and their given names decoded once:
    the k² / 2 pairs of a block of k rows then read nearby memory only; a given name that cannot
    reach the threshold is not scored (`_similar_at_least`).
    """
    blocks = starts.shape[0]
    widest = 0
    for block in range(chunk, blocks, BLOCK_CHUNKS):
        if not write or emitted[block] > 0:
            widest = max(widest, stops[block] - starts[block])
    rows = np.empty(widest, dtype=np.int64)
    persons = np.empty(widest, dtype=np.int64)
    households = np.empty(widest, dtype=np.int64)
    numbers = np.empty(widest, dtype=np.int64)
    row_flags = np.empty(widest, dtype=np.int64)
    given_points = np.empty((widest, longest), dtype=np.int64)
    given_lengths = np.empty(widest, dtype=np.int64)
    code_points_a = np.empty(longest, dtype=np.int64)
    code_points_b = np.empty(longest, dtype=np.int64)
    matched_a = np.empty(longest, dtype=np.bool_)
    matched_b = np.empty(longest, dtype=np.bool_)
    for block in range(chunk, blocks, BLOCK_CHUNKS):
        if write and emitted[block] == 0:
            continue
        size = stops[block] - starts[block]
        is_one_block = True
        for x in range(size):
            r = hashed_rows[starts[block] + x] & ROW_MASK
            rows[x] = r
            persons[x] = person_key[r]
            households[x] = household_id[r]
            numbers[x] = my_number[r]
            row_flags[x] = flags[r]
            given_lengths[x] = _decode_utf8(given_data, given_offsets[r], given_offsets[r + 1],
                                            given_points[x])
            is_one_block = is_one_block and birth_date[r] == birth_date[rows[0]] and (
                key_codes[r] == key_codes[rows[0]])
        block_compared = 0
        block_emitted = 0
        for x in range(size):
            for y in range(x + 1, size):
                if not is_one_block and not (birth_date[rows[x]] == birth_date[rows[y]]
                                             and key_codes[rows[x]] == key_codes[rows[y]]):
                    continue
                # the blocking join's conditions: another household, another My Number, and
                # one orientation (left key < right key: a person key never pairs with itself)
                if (households[x] == households[y] or numbers[x] == numbers[y]
                        or persons[x] == persons[y]):
                    continue
                # the given-name pass skips pairs the family-name pass already compared
                if (skip_equal_family and (row_flags[x] & row_flags[y] & FAMILY_IS_SET) != 0
                        and _same_string(family_offsets, family_data, rows[x], rows[y])):
                    continue
                shared = ((row_flags[x] | row_flags[y]) & SHARED_PERSON_KEY) != 0
                if not shared:
                    block_compared += 1
                a, b = (x, y) if persons[x] < persons[y] else (y, x)
                given = np.nan
                family = np.nan
                whole = np.nan
                matched = False
                if (row_flags[x] & row_flags[y] & SCORABLE) != 0:
                    # the given name first: it fails most often, and then nothing else is scored.
                    # A pair that is only counted skips the halves that cannot reach the
                    # threshold (NaN); one that is emitted either way (shared) is scored exactly
                    given = _similar_at_least(given_points[a], given_lengths[a], given_points[b],
                                              given_lengths[b], matched_a, matched_b,
                                              part_min_similarity, shared)
                    if given >= part_min_similarity:
                        family = _scored(family_offsets, family_data, rows[a], rows[b],
                                         code_points_a, code_points_b, matched_a, matched_b)
                        if family >= part_min_similarity:
                            whole = _scored(name_offsets, name_data, rows[a], rows[b],
                                            code_points_a, code_points_b, matched_a, matched_b)
                            matched = whole >= name_min_similarity
                if matched or shared:
                    if write:
                        k = at[block] + block_emitted
                        left[k] = rows[a]
                        right[k] = rows[b]
                        similarity[k] = whole
                        family_similarity[k] = family
                        given_similarity[k] = given
                        is_matched[k] = matched
                    block_emitted += 1
        if not write:
            compared[block] = block_compared
            emitted[block] = block_emitted


# the only parallel code: numba compiles every array expression of a parallel function into a
# parallel loop of its own, so the rest of the pass stays serial (a third of the compile time)
@njit(
    types.none(
        int64[::1], int64[::1], Int64In, Int64In, Int64In, Int64In, Int64In, Int64In, Int64In, boolean,
        Int64In, UInt8In, Int64In, UInt8In, Int64In, UInt8In, float64, float64, int64,
        boolean, int64[::1], int64[::1], int64[::1],
        int64[::1], int64[::1], float64[::1], float64[::1], float64[::1], boolean[::1],
    ),
    cache=True,
    nogil=True,
    parallel=True,
)
def _walked_chunks(starts, stops, hashed_rows, birth_date, key_codes, person_key, my_number,
                   household_id, flags, skip_equal_family, family_offsets, family_data,
                   given_offsets, given_data, name_offsets, name_data, name_min_similarity,
                   part_min_similarity, longest, write, at, compared, emitted, left, right,
                   similarity, family_similarity, given_similarity, is_matched):
    """`_chunk_pairs` for every chunk, the chunks shared among the threads."""
    for chunk in prange(BLOCK_CHUNKS):
        _chunk_pairs(chunk, starts, stops, hashed_rows, birth_date, key_codes, person_key,
                     my_number, household_id, flags, skip_equal_family, family_offsets,
                     family_data, given_offsets, given_data, name_offsets, name_data,
                     name_min_similarity, part_min_similarity, longest, write, at, compared,
                     emitted, left, right, similarity, family_similarity, given_similarity,
                     is_matched)


@njit(
    types.Tuple((int64[::1], int64[::1], float64[::1], float64[::1], float64[::1], boolean[::1], int64))(
        Int64In, Int64In, Int64In,  # hashed rows, birth dates, key codes
        Int64In, Int64In, Int64In, Int64In, boolean,  # rows, flags; pass-2 rule
        Int64In, UInt8In, Int64In, UInt8In, Int64In, UInt8In,  # family, given, whole name
        float64, float64,  # thresholds
    ),
    cache=True,
    nogil=True,
)
def fuzzy_identity_pairs(hashed_rows, birth_date, key_codes, person_key, my_number, household_id,
                         flags, skip_equal_family, family_offsets, family_data, given_offsets,
                         given_data, name_offsets, name_data, name_min_similarity,
                         part_min_similarity):
    """One blocking pass of the fuzzy identity check, walked block by block without listing the
    candidate pairs: (left rows, right rows, similarity, family_similarity, given_similarity,
    is_matched, compared).

    `hashed_rows` and `key_codes` come from `block_hashed_rows` of the pass's block key, the
    hashed rows sorted. `flags` holds SHARED_PERSON_KEY, SCORABLE (no name part is null) and
    FAMILY_IS_SET per row. Inside a block (equal birth date, sex and block key), every pair in
    two households with two My Numbers and two person keys is compared: Jaro-Winkler (as
    `jaro_winkler_pairs`, left = smaller person key) of the given names, then of the family
    names, then of the whole names, each only while the earlier ones pass (`part_min_similarity`
    for the halves, `name_min_similarity` for the whole; a score never computed is NaN). With
    `skip_equal_family` (the given-name pass), pairs with equal, non-null family names are
    skipped: the family-name pass compared them already.

    Emitted: the matched pairs of rows with unshared person keys, and every compared pair that
    involves a row whose person key is shared (see `_chunk_pairs`); `compared` counts the others.
    Rows come in block order, then pair order: the same for any number of threads.
    """
    n = person_key.shape[0]
    if (my_number.shape[0] != n or household_id.shape[0] != n or birth_date.shape[0] != n
            or key_codes.shape[0] != n or flags.shape[0] != n):
        raise ValueError("fuzzy_identity_pairs: the row arrays must have the same length")
    if (family_offsets.shape[0] != n + 1 or given_offsets.shape[0] != n + 1
            or name_offsets.shape[0] != n + 1):
        raise ValueError("fuzzy_identity_pairs: every string column needs rows + 1 offsets")
    for k in range(hashed_rows.shape[0]):
        if (hashed_rows[k] & ROW_MASK) >= n:
            raise ValueError("fuzzy_identity_pairs: a hashed row's number is out of range")
        if k > 0 and hashed_rows[k] < hashed_rows[k - 1]:
            raise ValueError("fuzzy_identity_pairs: hashed_rows must be sorted")
    longest = 0  # in bytes, an upper bound on code points
    for i in range(n):
        longest = max(longest, family_offsets[i + 1] - family_offsets[i],
                      given_offsets[i + 1] - given_offsets[i], name_offsets[i + 1] - name_offsets[i])
    starts, stops = _block_bounds(hashed_rows)
    blocks = starts.shape[0]
    compared = np.zeros(blocks, dtype=np.int64)
    emitted = np.zeros(blocks, dtype=np.int64)
    at = np.zeros(blocks + 1, dtype=np.int64)
    no_rows = np.empty(0, dtype=np.int64)
    no_scores = np.empty(0, dtype=np.float64)
    no_flags = np.empty(0, dtype=np.bool_)
    # first walk: count. Matches are rare, so the second walk, which writes each block's pairs
    # from its offset, revisits only the few blocks that emit anything
    _walked_chunks(starts, stops, hashed_rows, birth_date, key_codes, person_key, my_number,
                   household_id, flags, skip_equal_family, family_offsets, family_data,
                   given_offsets, given_data, name_offsets, name_data, name_min_similarity,
                   part_min_similarity, longest, False, at, compared, emitted,
                   no_rows, no_rows, no_scores, no_scores, no_scores, no_flags)
    for block in range(blocks):
        at[block + 1] = at[block] + emitted[block]
    total = at[blocks]
    left = np.empty(total, dtype=np.int64)
    right = np.empty(total, dtype=np.int64)
    similarity = np.empty(total, dtype=np.float64)
    family_similarity = np.empty(total, dtype=np.float64)
    given_similarity = np.empty(total, dtype=np.float64)
    is_matched = np.empty(total, dtype=np.bool_)
    _walked_chunks(starts, stops, hashed_rows, birth_date, key_codes, person_key, my_number,
                   household_id, flags, skip_equal_family, family_offsets, family_data,
                   given_offsets, given_data, name_offsets, name_data, name_min_similarity,
                   part_min_similarity, longest, True, at, compared, emitted,
                   left, right, similarity, family_similarity, given_similarity, is_matched)
    return left, right, similarity, family_similarity, given_similarity, is_matched, compared.sum()
