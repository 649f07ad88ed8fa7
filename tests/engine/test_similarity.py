"""The Polars wrappers in engine/similarity.py: buffers, nulls, slices, chunks, alignment.

The kernels' arithmetic is checked against twins in test_kernels.py; here the question is
whether the wrappers hand the kernels the right rows and put the answers back in the right place.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_series_equal

from engine import kernels, similarity
from engine.errors import EngineError

LEFT = ["MARTHA", None, "DIXON", "タナカ", "", "ｽｽﾞｷ", "DWAYNE"]
RIGHT = ["MARHTA", "X", None, "タナカ", "", "ｽｽﾞｷｲ", "DUANE"]
EXPECTED = [0.961111, None, None, 1.0, 1.0, 0.96, 0.84]


def scores_by_kernel(left: list[str], right: list[str]) -> list[float]:
    """Straight from Python strings to the kernel, no wrapper involved."""
    buffers = []
    for strings in (left, right):
        _, offsets, data = pa.array(strings, type=pa.large_string()).buffers()
        buffers += [np.frombuffer(offsets, dtype=np.int64), np.frombuffer(data, dtype=np.uint8)]
    return kernels.jaro_winkler_pairs(*buffers).tolist()


def test_jaro_winkler_literal() -> None:
    got = similarity.jaro_winkler(pl.Series("a", LEFT), pl.Series("b", RIGHT))
    assert_series_equal(got, pl.Series("a", EXPECTED), abs_tol=1e-6)


def test_jaro_winkler_slices_and_chunks() -> None:
    left = pl.concat([pl.Series("a", LEFT), pl.Series("a", LEFT[::-1])], rechunk=False)
    right = pl.concat([pl.Series("b", RIGHT), pl.Series("b", RIGHT[::-1])], rechunk=False)
    assert left.n_chunks() == 2
    expected = pl.Series("a", EXPECTED + EXPECTED[::-1])
    assert_series_equal(similarity.jaro_winkler(left, right), expected, abs_tol=1e-6)
    for start, length in [(3, 7), (0, 1), (6, 2), (13, 1), (5, 0)]:
        got = similarity.jaro_winkler(left.slice(start, length), right.slice(start, length))
        assert_series_equal(got, expected.slice(start, length), abs_tol=1e-6)
    # one side chunked, the other not
    got = similarity.jaro_winkler(left, right.rechunk())
    assert_series_equal(got, expected, abs_tol=1e-6)


@pytest.mark.parametrize(
    "arrow_type", [pa.string(), pa.large_string(), pa.string_view()], ids=str
)
def test_string_buffers_of_sliced_arrow_arrays(arrow_type: pa.DataType) -> None:
    values = ["ｱｲ", "", None, "イウエ", "😀x"]
    array = pa.array(values, type=arrow_type)
    for start in range(len(values)):
        offsets, data, _ = similarity.string_buffers(array.slice(start))
        assert offsets.shape == (len(values) - start + 1,)
        decoded = [bytes(data[offsets[i]:offsets[i + 1]]).decode() for i in range(len(offsets) - 1)]
        assert decoded == [v or "" for v in values[start:]]
    chunked = pa.chunked_array([array.slice(1, 2), array.slice(3)])
    offsets, data, _ = similarity.string_buffers(chunked)
    assert bytes(data[offsets[0]:offsets[-1]]).decode() == "イウエ😀x"


def test_jaro_winkler_agrees_with_kernel_on_random_names() -> None:
    rng = np.random.default_rng(7)
    kana = [chr(c) for c in range(0xFF66, 0xFF9E)]
    left = ["".join(rng.choice(kana, size=rng.integers(0, 9))) for _ in range(5_000)]
    right = [s[::-1] if i % 3 else s[1:] for i, s in enumerate(left)]
    got = similarity.jaro_winkler(pl.Series(left), pl.Series(right))
    assert got.to_list() == scores_by_kernel(left, right)


def test_jaro_winkler_all_null_and_empty() -> None:
    nulls = pl.Series([None, None], dtype=pl.String)
    assert similarity.jaro_winkler(nulls, pl.Series(["a", "b"])).to_list() == [None, None]
    assert similarity.jaro_winkler(pl.Series([None, None]), nulls).to_list() == [None, None]
    empty = pl.Series([], dtype=pl.String)
    got = similarity.jaro_winkler(empty, empty)
    assert got.dtype == pl.Float64 and got.len() == 0


def test_jaro_winkler_rejects_bad_input() -> None:
    with pytest.raises(EngineError, match="has 2 rows"):
        similarity.jaro_winkler(pl.Series("a", ["x", "y"]), pl.Series("b", ["x"]))
    with pytest.raises(EngineError, match="expected String"):
        similarity.jaro_winkler(pl.Series("a", [1]), pl.Series("b", ["x"]))


def test_jaro_winkler_parameters_pass_through() -> None:
    got = similarity.jaro_winkler(pl.Series(["MARTHA"]), pl.Series(["MARHTA"]), prefix_scale=0.0)
    assert got[0] == pytest.approx(0.944444, abs=1e-6)  # plain Jaro


def test_jaro_winkler_expr_is_lazy_and_typed() -> None:
    frame = pl.LazyFrame({"name_l": LEFT, "name_r": RIGHT})
    query = frame.with_columns(similarity.jaro_winkler_expr("name_l", "name_r").alias("score"))
    assert query.collect_schema()["score"] == pl.Float64
    got = query.collect()["score"]
    assert_series_equal(got, pl.Series("score", EXPECTED), abs_tol=1e-6)
    filtered = frame.filter(similarity.jaro_winkler_expr("name_l", "name_r") > 0.9).collect()
    assert filtered["name_l"].to_list() == ["MARTHA", "タナカ", "", "ｽｽﾞｷ"]


# --- components ----------------------------------------------------------------------------------


def test_components_literal() -> None:
    got = similarity.components(
        pl.Series("resident_id", [1, 2, 5, 7, 9]), pl.Series([9, 2]), pl.Series([5, 1])
    )
    assert_series_equal(got, pl.Series("component_id", [1, 1, 5, 7, 5]))


def test_components_keeps_the_order_of_node_ids() -> None:
    rng = np.random.default_rng(3)
    node_ids = rng.permutation(np.unique(rng.integers(0, 10**9, size=2_000)))
    edges = rng.choice(node_ids, size=(1_500, 2))
    got = similarity.components(pl.Series(node_ids), pl.Series(edges[:, 0]), pl.Series(edges[:, 1]))
    order = np.argsort(node_ids)
    expected = np.empty_like(node_ids)
    expected[order] = kernels.connected_components(node_ids[order], edges[:, 0].copy(),
                                                   edges[:, 1].copy())
    assert got.to_list() == expected.tolist()
    assert (got.to_numpy() <= node_ids).all()


def test_components_accepts_chunked_and_narrow_ids() -> None:
    node_ids = pl.concat([pl.Series([1, 2], dtype=pl.Int32), pl.Series([3], dtype=pl.Int32)],
                         rechunk=False)
    left = pl.concat([pl.Series([3], dtype=pl.UInt16), pl.Series([2], dtype=pl.UInt16)],
                     rechunk=False)
    got = similarity.components(node_ids, left, pl.Series([2, 2], dtype=pl.Int64))
    assert got.to_list() == [1, 2, 2]


@pytest.mark.parametrize(
    ("node_ids", "left", "right", "match"),
    [
        ([1, 2, 3], [1], [4], "not in node_ids"),
        ([1, 2, 2], [1], [2], "sorted and unique"),
        ([1, None, 3], [1], [3], "null"),
        ([1, 2, 3], [1, 2], [3], "left has 2 rows"),
        ([1.0, 2.0], [1], [2], "expected an integer type"),
    ],
)
def test_components_rejects_bad_input(node_ids: list, left: list, right: list, match: str) -> None:
    with pytest.raises(EngineError, match=match):
        similarity.components(pl.Series(node_ids), pl.Series(left), pl.Series(right))
