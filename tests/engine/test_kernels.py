"""Each kernel in engine/kernels.py against a slow, obviously correct pure-Python twin.

The twins are written from the specification (research §3.1, §7.7; the textbook Jaro-Winkler;
a BFS for connected components), not from the kernels. Random inputs are seeded and the tests
are parametrized on the seed, so a failure names the seed that reproduces it.
"""

from __future__ import annotations

import collections

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from stdnum.jp import in_ as stdnum_my_number

from engine import kernels
from engine.reference import MUNICIPALITIES_CSV

SEEDS = range(20)


# --- twins ---------------------------------------------------------------------------------------


def my_number_check_digit_reference(base: int) -> int:
    """省令 第5条: P_n is the n-th digit of the 11-digit base counted from the least significant,
    Q_n = n + 1 (1 ≤ n ≤ 6) or n − 5 (7 ≤ n ≤ 11); check = 0 if Σ P_n·Q_n mod 11 ≤ 1, else 11 − it.
    """
    digits = f"{base:011d}"
    total = 0
    for n in range(1, 12):
        p = int(digits[-n])
        q = n + 1 if n <= 6 else n - 5
        total += p * q
    remainder = total % 11
    return 0 if remainder <= 1 else 11 - remainder


def my_number_is_valid_reference(number: int) -> bool:
    if not 0 <= number < 10**12:
        return False
    text = f"{number:012d}"
    return my_number_check_digit_reference(int(text[:11])) == int(text[11])


def municipality_code_is_valid_reference(code: int) -> bool:
    """総務省: digits 1–5 times 6,5,4,3,2; the last digit of 11 − (sum mod 11) is the check digit."""
    if not 0 <= code < 10**6:
        return False
    text = f"{code:06d}"
    total = sum(w * int(d) for w, d in zip((6, 5, 4, 3, 2), text[:5], strict=True))
    return str(11 - total % 11)[-1] == text[5]


def jaro_winkler_reference(a: str, b: str, p: float = 0.1, max_prefix: int = 4) -> float:
    """Textbook Jaro-Winkler over Python str (code points)."""
    if not a and not b:
        return 1.0
    if not a or not b:
        return 0.0
    window = max(max(len(a), len(b)) // 2 - 1, 0)
    a_matched = [False] * len(a)
    b_matched = [False] * len(b)
    m = 0
    for i, ch in enumerate(a):
        for j in range(max(0, i - window), min(len(b), i + window + 1)):
            if not b_matched[j] and b[j] == ch:
                a_matched[i] = b_matched[j] = True
                m += 1
                break
    if m == 0:
        return 0.0
    a_seq = [ch for ch, hit in zip(a, a_matched, strict=True) if hit]
    b_seq = [ch for ch, hit in zip(b, b_matched, strict=True) if hit]
    t = sum(x != y for x, y in zip(a_seq, b_seq, strict=True)) / 2
    jaro = (m / len(a) + m / len(b) + (m - t) / m) / 3
    prefix = 0
    for x, y in zip(a[:max_prefix], b[:max_prefix]):
        if x != y:
            break
        prefix += 1
    return jaro + prefix * p * (1 - jaro)


def components_reference(node_ids: list[int], edges: list[tuple[int, int]]) -> list[int]:
    """BFS over an adjacency dict: the smallest id of each node's component."""
    adjacency: dict[int, list[int]] = collections.defaultdict(list)
    for u, v in edges:
        adjacency[u].append(v)
        adjacency[v].append(u)
    smallest: dict[int, int] = {}
    for start in node_ids:
        if start in smallest:
            continue
        seen = {start}
        queue = collections.deque([start])
        while queue:
            for nxt in adjacency[queue.popleft()]:
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        low = min(seen)
        for node in seen:
            smallest[node] = low
    return [smallest[node] for node in node_ids]


# --- helpers -------------------------------------------------------------------------------------


def read_only(values: np.ndarray) -> np.ndarray:
    """A read-only int64 view, as Polars' zero-copy to_numpy() hands out."""
    view = np.ascontiguousarray(values, dtype=np.int64).view()
    view.flags.writeable = False
    return view


def my_number_check_digits_numpy(bases: np.ndarray) -> np.ndarray:
    """Vectorised left-to-right form (weights 6,5,4,3,2,7,6,5,4,3,2): (−s) mod 11 mod 10."""
    powers = 10 ** np.arange(10, -1, -1, dtype=np.int64)
    digits = (bases[:, None] // powers) % 10
    return (-(digits @ kernels.MY_NUMBER_WEIGHTS)) % 11 % 10


def random_my_numbers(rng: np.random.Generator, n: int) -> np.ndarray:
    """n numbers in [0, 10^12): about half with a correct check digit, many with leading zeros."""
    leading_zeros = rng.integers(0, 12, size=n)
    leading_zeros[rng.random(n) < 0.5] = 0  # half use the full 11-digit range
    bases = rng.integers(0, 10**11, size=n) // 10**leading_zeros
    checks = rng.integers(0, 10, size=n)
    valid = rng.random(n) < 0.5
    checks[valid] = my_number_check_digits_numpy(bases[valid])
    return bases * 10 + checks


def arrow_buffers(strings: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, data) of a large_string Arrow array, read-only, zero-copy."""
    _, offsets, data = pa.array(strings, type=pa.large_string()).buffers()
    data_view = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8)
    return np.frombuffer(offsets, dtype=np.int64), data_view


# --- My Number check digit -----------------------------------------------------------------------

# research §3.1, literally: (input, valid?)
MY_NUMBER_VECTORS = [
    ("621498320257", True),
    ("6214 9832 0257", True),
    ("6214-9832-0257", True),
    ("123456789018", True),
    ("100000000080", True),
    ("100000000030", True),
    ("100000000099", True),
    ("000000000000", True),
    ("621498320258", False),
    ("123456789010", False),
    ("6214 9832 025X", False),
    ("62149832025", False),
    ("291417776316", True),
    ("706690743914", True),
    ("500080636086", True),
    ("377835337401", True),
    ("681241586836", True),
    ("449786907362", True),
    ("625851781285", True),
    ("657070499966", True),
]


def my_number_text_is_valid(text: str) -> bool:
    """Parse as stdnum's compact() does (strip spaces and hyphens), then ask the kernel."""
    digits = text.replace(" ", "").replace("-", "").strip()
    if len(digits) != 12 or not digits.isascii() or not digits.isdigit():
        return False
    return bool(kernels.my_number_is_valid(read_only(np.array([int(digits)])))[0])


@pytest.mark.parametrize(("text", "expected"), MY_NUMBER_VECTORS)
def test_my_number_research_vectors(text: str, expected: bool) -> None:
    assert my_number_text_is_valid(text) is expected
    assert stdnum_my_number.is_valid(text) is expected


def test_my_number_check_digits_research_vectors() -> None:
    # 621498320257 → 7; 100000000030 → 0 (remainder 1, where a naive 11 − r gives 10)
    bases = read_only(np.array([62149832025, 12345678901, 10000000008, 10000000003, 10000000009]))
    assert kernels.my_number_check_digits(bases).tolist() == [7, 8, 0, 0, 9]


@pytest.mark.parametrize("seed", SEEDS)
def test_my_number_is_valid_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    numbers = np.concatenate([
        random_my_numbers(rng, 2_000),
        rng.integers(-(10**13), 10**13, size=200),  # out of range on both sides
        [0, -1, 10**12 - 1, 10**12, 10**12 + 7, np.iinfo(np.int64).min, np.iinfo(np.int64).max],
    ])
    got = kernels.my_number_is_valid(read_only(numbers))
    assert got.tolist() == [my_number_is_valid_reference(int(n)) for n in numbers]


@pytest.mark.parametrize("seed", SEEDS)
def test_my_number_check_digits_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    bases = np.concatenate([
        rng.integers(0, 10**11, size=2_000),
        rng.integers(0, 10**5, size=200),  # leading zeros
        [0, 10**11 - 1, 10**11, -1, -(10**11)],
    ])
    expected = [my_number_check_digit_reference(int(b)) if 0 <= b < 10**11 else -1 for b in bases]
    assert kernels.my_number_check_digits(read_only(bases)).tolist() == expected


@pytest.mark.parametrize(
    "n", [100_000, pytest.param(1_000_000, marks=pytest.mark.slow)]
)  # stdnum checks ~100k strings per second; 1M takes ~10 s
def test_my_number_is_valid_agrees_with_stdnum(n: int) -> None:
    numbers = random_my_numbers(np.random.default_rng(2020), n)
    got = kernels.my_number_is_valid(read_only(numbers))
    texts = pl.Series(numbers).cast(pl.String).str.zfill(12).to_list()
    expected = np.fromiter(map(stdnum_my_number.is_valid, texts), dtype=np.bool_, count=n)
    mismatches = np.flatnonzero(got != expected)
    assert mismatches.size == 0, f"{mismatches.size} mismatches, e.g. {texts[mismatches[0]]}"
    assert 0.45 < got.mean() < 0.6  # the mix really is about half valid
    assert (numbers < 10**11).mean() > 0.3  # and many have leading zeros


def test_check_digit_kernels_accept_writable_and_read_only_arrays() -> None:
    numbers = np.array([621498320257, 621498320258])
    for array in (numbers, read_only(numbers)):
        assert kernels.my_number_is_valid(array).tolist() == [True, False]
        assert kernels.my_number_check_digits(array // 10).tolist() == [7, 7]
        assert kernels.municipality_code_is_valid(array % 10**6).tolist() == [False, False]
    assert len(kernels.my_number_is_valid.signatures) == 1  # no compilation at call time


# --- municipality check digit --------------------------------------------------------------------


def municipality_codes() -> np.ndarray:
    codes = pl.read_csv(MUNICIPALITIES_CSV, schema_overrides={"municipality_code": pl.String})
    return codes["municipality_code"].cast(pl.Int64).to_numpy()


def test_municipality_codes_in_reference_table_are_valid() -> None:
    codes = municipality_codes()
    assert codes.size == 1_788
    assert kernels.municipality_code_is_valid(codes).all()
    assert all(municipality_code_is_valid_reference(int(c)) for c in codes)


def test_municipality_research_examples() -> None:
    examples = read_only(np.array([11002, 130001, 10006, 131016, 141003, 271403, 141500, 12025,
                                   33014, 131015, 130000]))
    assert kernels.municipality_code_is_valid(examples).tolist() == [True] * 9 + [False, False]


def test_municipality_altered_codes_match_reference() -> None:
    codes = municipality_codes()
    altered = []
    check_digit_changed = []
    for code in codes.tolist():
        text = f"{code:06d}"
        for position in range(6):
            for digit in "0123456789":
                if digit != text[position]:
                    altered.append(int(text[:position] + digit + text[position + 1:]))
                    check_digit_changed.append(position == 5)
        for position in range(5):  # adjacent transpositions
            swapped = text[:position] + text[position + 1] + text[position] + text[position + 2:]
            if swapped != text:
                altered.append(int(swapped))
                check_digit_changed.append(False)
    altered_codes = np.array(altered)
    got = kernels.municipality_code_is_valid(read_only(altered_codes))
    assert got.tolist() == [municipality_code_is_valid_reference(c) for c in altered]
    # a wrong check digit is always caught; other single errors mostly (r = 0 and 10 share cd 1)
    assert not got[np.array(check_digit_changed)].any()
    assert got.mean() < 0.05


@pytest.mark.parametrize("seed", SEEDS)
def test_municipality_code_is_valid_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    codes = np.concatenate([rng.integers(-10, 10**6 + 10, size=5_000), [0, 999_999, 10**6]])
    got = kernels.municipality_code_is_valid(read_only(codes))
    assert got.tolist() == [municipality_code_is_valid_reference(int(c)) for c in codes]


# --- Jaro-Winkler --------------------------------------------------------------------------------

FULL_WIDTH_KATAKANA = [chr(c) for c in range(0x30A1, 0x30F7)] + ["ー"]
HALF_WIDTH_KATAKANA = [chr(c) for c in range(0xFF66, 0xFFA0)]  # ｦ … ﾟ, incl. small kana, ｰ, ﾞ ﾟ


def random_kana_pairs(seed: int, n: int) -> tuple[list[str], list[str]]:
    """Pairs of kana names: unrelated, or the second a typo'd copy of the first (swaps, drops,
    substitutions, width changes), over small alphabets so letters repeat."""
    rng = np.random.default_rng(seed)
    left, right = [], []
    for _ in range(n):
        script = FULL_WIDTH_KATAKANA if rng.random() < 0.5 else HALF_WIDTH_KATAKANA
        alphabet = [script[i] for i in rng.choice(len(script), size=rng.integers(1, 8))]
        if rng.random() < 0.1:
            alphabet.append(" ")
        a = "".join(rng.choice(alphabet, size=rng.integers(0, 13)))
        if rng.random() < 0.3:
            b = "".join(rng.choice(alphabet, size=rng.integers(0, 13)))
        else:
            chars = list(a)
            for _ in range(rng.integers(0, 4)):
                kind = rng.integers(0, 4)
                i = int(rng.integers(0, len(chars))) if chars else 0
                if kind == 0 and len(chars) > 1 and i + 1 < len(chars):
                    chars[i], chars[i + 1] = chars[i + 1], chars[i]
                elif kind == 1 and chars:
                    del chars[i]
                elif kind == 2 and chars:
                    chars[i] = str(rng.choice(alphabet))
                else:
                    chars.insert(i, str(rng.choice(alphabet)))
            b = "".join(chars)
        left.append(a)
        right.append(b)
    return left, right


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("MARTHA", "MARHTA", 0.9611),
        ("DWAYNE", "DUANE", 0.84),
        ("DIXON", "DICKSONX", 0.8133),
        ("JELLYFISH", "SMELLYFISH", 0.8963),
        ("", "", 1.0),
        ("ABC", "", 0.0),
        ("", "ABC", 0.0),
        ("ABC", "XYZ", 0.0),
        ("タナカ", "タナカ", 1.0),
        ("ﾀﾅｶ", "タナカ", 0.0),  # half and full width are different code points: normalise first
    ],
)
def test_jaro_winkler_known_values(a: str, b: str, expected: float) -> None:
    offsets_a, data_a = arrow_buffers([a])
    offsets_b, data_b = arrow_buffers([b])
    got = kernels.jaro_winkler_pairs(offsets_a, data_a, offsets_b, data_b)[0]
    assert got == pytest.approx(expected, abs=5e-5)
    assert jaro_winkler_reference(a, b) == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_jaro_winkler_matches_reference(seed: int) -> None:
    left, right = random_kana_pairs(seed, 1_000)
    offsets_a, data_a = arrow_buffers(left)
    offsets_b, data_b = arrow_buffers(right)
    got = kernels.jaro_winkler_pairs(offsets_a, data_a, offsets_b, data_b)
    expected = [jaro_winkler_reference(a, b) for a, b in zip(left, right, strict=True)]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("prefix_scale", "max_prefix"), [(0.0, 4), (0.1, 0), (0.25, 4), (0.2, 2)])
def test_jaro_winkler_parameters_match_reference(prefix_scale: float, max_prefix: int) -> None:
    left, right = random_kana_pairs(99, 500)
    offsets_a, data_a = arrow_buffers(left)
    offsets_b, data_b = arrow_buffers(right)
    got = kernels.jaro_winkler_pairs(offsets_a, data_a, offsets_b, data_b, prefix_scale, max_prefix)
    expected = [jaro_winkler_reference(a, b, prefix_scale, max_prefix) for a, b in zip(left, right)]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_a_name_half_is_skipped_only_when_it_cannot_reach_the_threshold(seed: int) -> None:
    """`_similar_at_least` (the fuzzy identity kernel's bound): NaN only for a pair whose
    Jaro-Winkler is below the threshold, the exact score otherwise; always the exact score for a
    pair scored `exact`. Lengths differ often among these pairs, so the bound has work to do."""
    left, right = random_kana_pairs(seed, 2_000)
    skipped = 0
    for a, b in zip(left, right, strict=True):
        points_a = np.array([ord(c) for c in a] or [0], dtype=np.int64)
        points_b = np.array([ord(c) for c in b] or [0], dtype=np.int64)
        flags_a, flags_b = np.zeros(len(points_a), dtype=np.bool_), np.zeros(len(points_b), dtype=np.bool_)
        expected = jaro_winkler_reference(a, b)
        for threshold in (0.0, 0.8, 0.9, 0.95, 0.98, 1.0):
            got = kernels._similar_at_least(points_a, len(a), points_b, len(b), flags_a, flags_b, threshold, False)
            if np.isnan(got):
                skipped += 1
                assert expected < threshold, (a, b, threshold)
            else:
                assert got == pytest.approx(expected, abs=1e-12), (a, b, threshold)
            exact = kernels._similar_at_least(points_a, len(a), points_b, len(b), flags_a, flags_b, threshold, True)
            assert exact == pytest.approx(expected, abs=1e-12)
    assert skipped > 1_000


def test_the_bound_is_tight_where_a_prefix_carries_a_name_over() -> None:
    # ｱｲｳｴ against ｱｲｳｴｵ: the shorter inside the longer, Jaro 0.9333, the prefix of 4 brings it
    # to 0.96: never skipped at 0.95; ｱｲｳ against ｱｲｳｴ reaches only 0.9417 (a prefix of 3)
    for a, b, best in (("ｱｲｳｴ", "ｱｲｳｴｵ", 0.96), ("ｱｲｳ", "ｱｲｳｴ", 0.941_666_666_666_666_7)):
        points_a, points_b = (np.array([ord(c) for c in x], dtype=np.int64) for x in (a, b))
        flags_a, flags_b = np.zeros(len(a), dtype=np.bool_), np.zeros(len(b), dtype=np.bool_)
        assert jaro_winkler_reference(a, b) == pytest.approx(best)
        at = kernels._similar_at_least(points_a, len(a), points_b, len(b), flags_a, flags_b, best, False)
        assert at == pytest.approx(best)
        above = kernels._similar_at_least(points_a, len(a), points_b, len(b), flags_a, flags_b, best + 1e-6, False)
        assert np.isnan(above)


def test_jaro_winkler_decodes_every_utf8_length() -> None:
    # 1-, 2-, 3- and 4-byte code points: compared by code point, not byte
    left = ["aé漢😀b", "😀😀", "é", "ｶﾞ"]
    right = ["aé漢😀c", "😀😁", "e", "ｶﾟ"]
    got = kernels.jaro_winkler_pairs(*arrow_buffers(left), *arrow_buffers(right))
    expected = [jaro_winkler_reference(a, b) for a, b in zip(left, right)]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert expected[1] == pytest.approx(2 / 3 + 0.1 / 3)  # 😀/😁 share 3 of 4 bytes


def test_jaro_winkler_truncated_utf8_stays_inside_the_row() -> None:
    # not producible by Arrow (it validates UTF-8), but the kernel must not read past a row
    katakana_a = np.frombuffer("ア".encode(), dtype=np.uint8)  # E3 82 A2
    cut = np.array([0, 2], dtype=np.int64)  # E3 82: a 3-byte sequence cut after 2 bytes
    offsets_b, data_b = arrow_buffers(["\ufffd"])
    assert kernels.jaro_winkler_pairs(cut, katakana_a, offsets_b, data_b)[0] == 1.0


def test_jaro_winkler_accepts_writable_arrays() -> None:
    offsets_a, data_a = arrow_buffers(["MARTHA"])
    offsets_b, data_b = arrow_buffers(["MARHTA"])
    got = kernels.jaro_winkler_pairs(offsets_a.copy(), data_a.copy(), offsets_b, data_b, 0.1, 4)
    assert got[0] == pytest.approx(0.9611, abs=5e-5)


def test_jaro_winkler_rejects_mismatched_inputs() -> None:
    offsets_a, data_a = arrow_buffers(["A", "B"])
    offsets_b, data_b = arrow_buffers(["A"])
    with pytest.raises(ValueError, match="same length"):
        kernels.jaro_winkler_pairs(offsets_a, data_a, offsets_b, data_b)
    with pytest.raises(ValueError, match="prefix_scale"):
        kernels.jaro_winkler_pairs(offsets_a, data_a, offsets_a, data_a, 0.3, 4)


# --- connected components ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_connected_components_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    node_ids = np.unique(rng.integers(-5_000, 10_000, size=int(rng.integers(1, 800))))
    n_edges = int(rng.integers(0, node_ids.size + 1))
    edges = rng.choice(node_ids, size=(n_edges, 2))
    got = kernels.connected_components(read_only(node_ids), read_only(edges[:, 0]),
                                       read_only(edges[:, 1]))
    assert got.tolist() == components_reference(node_ids.tolist(), edges.tolist())


INT64 = np.iinfo(np.int64)


@pytest.mark.parametrize(
    "layout", ["dense", "sparse", "one_outlier", "int64_extremes", "clustered"]
)
def test_connected_components_id_layouts_match_reference(layout: str) -> None:
    # the kernel buckets ids by value to find them: spread, skew and extremes must not matter
    rng = np.random.default_rng(len(layout))
    ids = {
        "dense": np.arange(3_000),
        "sparse": rng.integers(-(10**15), 10**15, size=3_000),
        "one_outlier": np.append(np.arange(3_000), INT64.max),
        "int64_extremes": np.concatenate([[INT64.min, INT64.min + 1, INT64.max - 1, INT64.max],
                                          rng.integers(INT64.min, INT64.max, size=3_000)]),
        "clustered": np.concatenate([np.arange(1_000) + 10**12 * k for k in range(3)]),
    }[layout]
    node_ids = np.unique(ids)
    edges = rng.choice(node_ids, size=(2_000, 2))
    got = kernels.connected_components(node_ids, edges[:, 0].copy(), edges[:, 1].copy())
    assert got.tolist() == components_reference(node_ids.tolist(), edges.tolist())


def test_connected_components_small_literal() -> None:
    node_ids = np.array([1, 2, 5, 7, 9, 11])
    left = np.array([9, 2, 11, 7])
    right = np.array([5, 1, 11, 7])  # self-loops are harmless
    assert kernels.connected_components(node_ids, left, right).tolist() == [1, 1, 5, 7, 5, 11]


def test_connected_components_long_chain_in_reverse() -> None:
    # worst case for naive union: a path added from the far end
    node_ids = np.arange(100_000)
    left = node_ids[:0:-1].copy()
    right = left - 1
    assert (kernels.connected_components(node_ids, left, right) == 0).all()


def test_connected_components_empty() -> None:
    empty = np.empty(0, dtype=np.int64)
    assert kernels.connected_components(empty, empty, empty).size == 0
    assert kernels.connected_components(np.array([3, 4]), empty, empty).tolist() == [3, 4]


@pytest.mark.parametrize(
    ("node_ids", "left", "right", "match"),
    [
        ([1, 2, 3], [1], [4], "not in node_ids"),
        ([1, 2, 3], [0], [2], "not in node_ids"),
        ([1, 3, 5], [1], [4], "not in node_ids"),
        ([], [1], [1], "not in node_ids"),
        ([1, 3, 2], [1], [2], "sorted and unique"),
        ([1, 2, 2], [1], [2], "sorted and unique"),
        ([1, 2, 3], [1, 2], [2], "same length"),
    ],
)
def test_connected_components_rejects_bad_input(
    node_ids: list[int], left: list[int], right: list[int], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        kernels.connected_components(
            np.array(node_ids, dtype=np.int64), np.array(left), np.array(right)
        )
