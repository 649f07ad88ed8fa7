"""engine/sorted_index.py against its twin, np.searchsorted, and routing.lookup against the
plain sorted-array join it replaced."""

from __future__ import annotations

import numpy as np
import pytest

from engine import sorted_index
from pipelines import routing


def twin_positions(sorted_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    if not len(sorted_ids):
        return np.full(len(values), -1, dtype=np.int64)
    at = np.minimum(np.searchsorted(sorted_ids, values), len(sorted_ids) - 1)
    return np.where(sorted_ids[at] == values, at, -1)


def twin_lookup(sorted_keys: np.ndarray, values: np.ndarray, keys: np.ndarray, default: int) -> np.ndarray:
    at = twin_positions(sorted_keys, keys)
    return np.where(at >= 0, values[np.maximum(at, 0)] if len(values) else default, default).astype(values.dtype)


def layouts(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "my_numbers": rng.integers(10**11, 10**12, n),
        "counter": np.arange(1, n + 1),
        "repeats": rng.integers(0, max(n // 4, 1), n),
        "skewed": np.concatenate([rng.integers(0, 50, n - 3), [10**15, 10**17, 2**62]]),
        "extremes": np.concatenate([rng.integers(-(2**62), 2**62, n - 3),
                                    [np.iinfo(np.int64).min, np.iinfo(np.int64).max, -1]]),
        "one": np.full(n, 7),
    }


@pytest.mark.parametrize("layout", ["my_numbers", "counter", "repeats", "skewed", "extremes", "one"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_positions_match_searchsorted(layout: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids = np.sort(layouts(rng, 5_000)[layout])
    hits = ids[rng.integers(0, len(ids), 3_000)]
    misses = rng.integers(ids.min() // 2 - 5, ids.max() // 2 * 2 + 5, 3_000) if layout != "extremes" else \
        rng.integers(-(2**63), 2**63 - 1, 3_000)
    values = np.concatenate([hits, misses, [ids[0], ids[-1], ids[0] - 1 if ids[0] > -(2**63) else ids[0]]])
    rng.shuffle(values)
    ids.flags.writeable = False
    values.flags.writeable = False
    got = sorted_index.positions(ids, values)
    assert got.tolist() == twin_positions(ids, values).tolist()
    assert (got[: len(hits)] >= -1).all()


def test_positions_first_of_repeats_and_edges() -> None:
    ids = np.array([-5, 3, 3, 3, 9, 9, 2**40], dtype=np.int64)
    values = np.array([3, 9, -5, 2**40, 4, -6, 2**41, 0], dtype=np.int64)
    assert sorted_index.positions(ids, values).tolist() == [1, 4, 0, 6, -1, -1, -1, -1]
    assert sorted_index.positions(np.array([], dtype=np.int64), values).tolist() == [-1] * 8
    assert sorted_index.positions(ids, np.array([], dtype=np.int64)).tolist() == []


@pytest.mark.parametrize("dtype", [np.int16, np.int64])
def test_lookup_matches_the_sorted_array_join(dtype) -> None:
    rng = np.random.default_rng(3)
    keys = np.unique(rng.integers(10**11, 10**12, 20_000))
    values = rng.integers(0, 26, len(keys)).astype(dtype)
    wanted = np.concatenate([keys[rng.integers(0, len(keys), 10_000)], rng.integers(10**11, 10**12, 10_000), [-1]])
    got = routing.lookup(keys, values, wanted, -1)
    assert got.dtype == dtype
    assert got.tolist() == twin_lookup(keys, values, wanted, -1).tolist()
    empty = routing.lookup(np.array([], dtype=np.int64), np.array([], dtype=dtype), wanted, 0)
    assert empty.dtype == dtype and (empty == 0).all()


@pytest.mark.parametrize("layout", ["my_numbers", "counter", "repeats", "skewed", "extremes", "one"])
def test_stable_argsort_matches_numpy(layout: str) -> None:
    rng = np.random.default_rng(7)
    keys = layouts(rng, 20_000)[layout]
    rng.shuffle(keys)
    keys.flags.writeable = False
    assert sorted_index._radix_argsort(keys).tolist() == np.argsort(keys, kind="stable").tolist()
    assert sorted_index.stable_argsort(keys).tolist() == np.argsort(keys, kind="stable").tolist()


@pytest.mark.parametrize("layout", ["my_numbers", "repeats", "skewed"])
def test_radix_argsort_in_parts_matches_numpy(layout: str) -> None:
    # enough rows for every part (RADIX_PARTS), and a size the parts do not divide evenly
    rng = np.random.default_rng(11)
    rows = sorted_index.RADIX_PARTS * sorted_index.RADIX_PART_ROWS + 12_345
    keys = layouts(rng, rows)[layout]
    rng.shuffle(keys)
    keys.flags.writeable = False
    assert np.array_equal(sorted_index._radix_argsort(keys), np.argsort(keys, kind="stable"))


def test_stable_argsort_keeps_the_order_of_equal_keys_and_small_inputs() -> None:
    keys = np.array([5, -1, 5, 5, -1, 0, 2**62, -(2**62), 5], dtype=np.int64)
    assert sorted_index._radix_argsort(keys).tolist() == [7, 1, 4, 5, 0, 2, 3, 8, 6]
    assert sorted_index.stable_argsort(keys).tolist() == [7, 1, 4, 5, 0, 2, 3, 8, 6]
    for small in ([], [3], [2, 1], [1, 0, 1]):
        arr = np.array(small, dtype=np.int64)
        assert sorted_index._radix_argsort(arr).tolist() == np.argsort(arr, kind="stable").tolist()
        assert sorted_index.stable_argsort(arr).tolist() == np.argsort(arr, kind="stable").tolist()


@pytest.mark.parametrize("layout", ["my_numbers", "counter", "repeats", "skewed", "extremes", "one"])
def test_ascending_matches_numpy_sort(layout: str) -> None:
    values = layouts(np.random.default_rng(3), 10_000)[layout]
    before = values.copy()
    assert sorted_index.ascending(values).tolist() == np.sort(values).tolist()
    assert np.array_equal(values, before)  # the input is left as it was
    for small in ([], [4], [5, 1, 5]):
        assert sorted_index.ascending(np.array(small, dtype=np.int64)).tolist() == sorted(small)


@pytest.mark.parametrize("layout", ["my_numbers", "counter", "repeats", "skewed", "extremes", "one"])
def test_unique_matches_numpy(layout: str) -> None:
    values = layouts(np.random.default_rng(11), 10_000)[layout]
    assert sorted_index.unique(values).tolist() == np.unique(values).tolist()
    for small in ([], [4], [4, 4], [5, 1]):
        assert sorted_index.unique(np.array(small, dtype=np.int64)).tolist() == np.unique(small).tolist()


def test_repeated_matches_numpy() -> None:
    values = layouts(np.random.default_rng(5), 10_000)["repeats"]
    distinct, counts = np.unique(values, return_counts=True)
    assert sorted_index.repeated(values).tolist() == distinct[counts > 1].tolist()
    assert sorted_index.repeated(np.array([3, 1, 2], dtype=np.int64)).tolist() == []


@pytest.mark.parametrize("layout", ["my_numbers", "counter", "repeats", "skewed", "extremes", "one"])
@pytest.mark.parametrize("run_length", [3, 20, 200])  # runs of equal first keys: short (insertion), long (merge)
def test_lexsort3_matches_numpy_lexsort(layout: str, run_length: int) -> None:
    rng = np.random.default_rng(run_length)
    n = 20_000
    first = rng.integers(0, n // run_length, n)
    second, third = layouts(rng, n)[layout], layouts(rng, n)[layout][::-1].copy()
    rng.shuffle(second)
    got = sorted_index.lexsort3(first, second, third)
    assert got.tolist() == np.lexsort((third, second, first)).tolist()


def test_lexsort3_keeps_the_order_of_equal_rows_and_small_inputs() -> None:
    first = np.array([2, 1, 2, 1, 2, 1, np.iinfo(np.int64).min], dtype=np.int64)
    second = np.array([5, 5, 5, 4, 5, 5, 0], dtype=np.int64)
    third = np.array([1, 0, 1, 9, 0, 0, 0], dtype=np.int64)
    assert sorted_index.lexsort3(first, second, third).tolist() == [6, 3, 1, 5, 4, 0, 2]
    for small in ([], [3], [2, 1]):
        arr = np.array(small, dtype=np.int64)
        assert sorted_index.lexsort3(arr, arr, arr).tolist() == np.lexsort((arr, arr, arr)).tolist()


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int16, np.bool_])
@pytest.mark.parametrize("index_dtype", [np.uint32, np.int64])
def test_take_and_put_match_numpy(dtype, index_dtype) -> None:
    rng = np.random.default_rng(5)
    values = rng.integers(-1_000, 1_000, 300_001).astype(dtype)
    order = rng.permutation(len(values)).astype(index_dtype)
    some = rng.integers(0, len(values), 50_000).astype(index_dtype)  # repeats allowed in a gather
    assert np.array_equal(sorted_index.take(values, order), values[order])
    assert np.array_equal(sorted_index.take(values, some), values[some])
    assert sorted_index.take(values, some).dtype == values.dtype
    assert len(sorted_index.take(values, np.array([], dtype=index_dtype))) == 0
    out, twin = np.zeros(len(values), dtype=dtype), np.zeros(len(values), dtype=dtype)
    sorted_index.put(out, order, values)
    twin[order] = values
    assert np.array_equal(out, twin)


def test_take_and_put_refuse_indices_out_of_range() -> None:
    values = np.arange(10, dtype=np.int64)
    for bad in ([0, 10], [-1, 3]):
        with pytest.raises(IndexError, match="out of range"):
            sorted_index.take(values, np.array(bad, dtype=np.int64))
        with pytest.raises(IndexError, match="out of range"):
            sorted_index.put(values.copy(), np.array(bad, dtype=np.int64), np.array([1, 2]))
    with pytest.raises(ValueError, match="2 indices for 3 values"):
        sorted_index.put(values.copy(), np.array([0, 1]), np.array([1, 2, 3]))
    with pytest.raises(TypeError, match="integers"):
        sorted_index.take(values, np.array([0.0, 1.0]))


def test_by_flag_is_the_stable_argsort_of_a_flag() -> None:
    flag = np.random.default_rng(2).random(100_003) < 0.3
    assert np.array_equal(routing.by_flag(flag), np.argsort(flag, kind="stable"))
    assert routing.by_flag(np.array([], dtype=bool)).tolist() == []


def test_groups_of_gives_the_sorted_keys() -> None:
    keys = np.random.default_rng(4).integers(0, 1_000, 20_000)
    order, starts, group, ordered = routing.groups_of(keys)
    assert np.array_equal(order, np.argsort(keys, kind="stable"))
    assert np.array_equal(ordered, np.sort(keys))
    assert np.array_equal(ordered[starts], np.unique(keys))
    assert np.array_equal(np.unique(keys)[group], ordered)
