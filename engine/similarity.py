"""Polars-facing wrappers for the similarity and clustering kernels in `engine.kernels`.

The wrappers own the conversions: string columns go to the Jaro-Winkler kernel as their Arrow
buffers (UTF-8 bytes and int64 offsets, zero-copy where Arrow allows), id columns go to the
union-find kernel as read-only NumPy views. Nulls are handled here; the kernels never see them.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from engine import kernels
from engine.errors import EngineError

_NO_BYTES = np.empty(0, dtype=np.uint8)


def string_buffers(array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """(offsets, data, large_string array) of an Arrow string array, in the large_string layout.

    Handles string_view and small string (cast with pyarrow.compute), chunked arrays (combined),
    and sliced arrays (offsets start at the array's offset into the buffer). The data buffer is
    not sliced: the offsets index into it.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if not pa.types.is_large_string(array.type):
        array = pc.cast(array, pa.large_string())
    _validity, offsets_buffer, data_buffer = array.buffers()
    n = len(array)
    if offsets_buffer is None:  # zero-length arrays may come without buffers
        offsets = np.zeros(n + 1, dtype=np.int64)
    else:
        offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[array.offset : array.offset + n + 1]
    data = _NO_BYTES if data_buffer is None else np.frombuffer(data_buffer, dtype=np.uint8)
    return offsets, data, array


def jaro_winkler(
    left: pl.Series, right: pl.Series, *, prefix_scale: float = 0.1, max_prefix: int = 4
) -> pl.Series:
    """Jaro-Winkler similarity of left[i] and right[i] by code points (Float64; null if either is).

    Compares the strings as given: normalise kana (width, small kana, long vowel mark) first.
    """
    if left.len() != right.len():
        msg = (
            f"jaro_winkler: left ({left.name!r}) has {left.len()} rows, right ({right.name!r}) "
            f"has {right.len()}\n\nHint: the two columns are compared row by row; pass pairs."
        )
        raise EngineError(msg)
    for side in (left, right):
        if side.dtype not in (pl.String, pl.Null):
            msg = (
                f"jaro_winkler: column {side.name!r} is {side.dtype}, expected String\n\n"
                "Hint: cast it with .cast(pl.String) first."
            )
            raise EngineError(msg)
    offsets_left, data_left, _keep_left = string_buffers(left.cast(pl.String).to_arrow())
    offsets_right, data_right, _keep_right = string_buffers(right.cast(pl.String).to_arrow())
    scores = kernels.jaro_winkler_pairs(
        offsets_left, data_left, offsets_right, data_right, float(prefix_scale), int(max_prefix)
    )
    result = pl.Series(left.name, scores, dtype=pl.Float64)
    if left.has_nulls() or right.has_nulls():
        result = pl.select(
            pl.when(left.is_not_null() & right.is_not_null()).then(result)
        ).to_series().alias(left.name)
    return result


def jaro_winkler_expr(
    a: str, b: str, *, prefix_scale: float = 0.1, max_prefix: int = 4
) -> pl.Expr:
    """Expression form of `jaro_winkler` over columns `a` and `b`, named after `a`.

    Elementwise, so it stays lazy and the schema is known without running the kernel.
    """

    def score(pairs: pl.Series) -> pl.Series:
        fields = pairs.struct.unnest()
        return jaro_winkler(
            fields.get_column(a), fields.get_column(b),
            prefix_scale=prefix_scale, max_prefix=max_prefix,
        )

    return (
        pl.struct(pl.col(a), pl.col(b))
        .map_batches(score, return_dtype=pl.Float64, is_elementwise=True)
        .alias(a)
    )


def components(node_ids: pl.Series, left: pl.Series, right: pl.Series) -> pl.Series:
    """For each node id, the smallest node id in its connected component (Int64, aligned with
    node_ids, named `component_id`).

    node_ids must be unique and non-null, in any order; each edge (left[i], right[i]) must join
    two of them. Collects nothing: it works on whole Series.
    """
    problems = []
    for name, side in (("node_ids", node_ids), ("left", left), ("right", right)):
        if not side.dtype.is_integer():
            problems.append(f"  {name} ({side.name!r}) is {side.dtype}, expected an integer type")
        elif side.has_nulls():
            problems.append(f"  {name} ({side.name!r}) has {side.null_count()} null(s)")
    if left.len() != right.len():
        problems.append(f"  left has {left.len()} rows, right has {right.len()}")
    if problems:
        msg = "\n".join(
            ["components: invalid input", *problems, "",
             "Hint: pass non-null integer ids, and edges as two columns of equal length."]
        )
        raise EngineError(msg)

    ids = node_ids.cast(pl.Int64)
    order = None
    if not ids.is_sorted():
        order = ids.arg_sort()
        ids = ids.gather(order)
    try:
        smallest = kernels.connected_components(
            ids.rechunk().to_numpy(),
            left.cast(pl.Int64).rechunk().to_numpy(),
            right.cast(pl.Int64).rechunk().to_numpy(),
        )
    except ValueError as error:
        msg = (
            f"{error}\n\nHint: node ids must be unique, and every edge must join two of them "
            "(drop or add the missing ids first)."
        )
        raise EngineError(msg) from error
    if order is not None:
        # put each result back at its node's original position
        aligned = np.empty_like(smallest)
        aligned[order.to_numpy()] = smallest
        smallest = aligned
    return pl.Series("component_id", smallest, dtype=pl.Int64)
