"""Kernels against their pure-Polars alternative, on the same seeded inputs (one group each).

Off by default (`--benchmark-disable` in addopts: each case then runs once, as a test). Measure:

    .venv/bin/pytest benchmarks/test_kernels.py --benchmark-enable -m ""

Every case checks its answer against the expected one from the data generator.
"""

from __future__ import annotations

import functools

import numpy as np
import polars as pl
import pytest

from engine import kernels, similarity

SEED = 0
# research §3.1, left to right over the 11 base digits
MY_NUMBER_WEIGHTS = (6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


# --- data (cached per process; benchmarks/conftest.py belongs to the shared fixtures) ------------


@functools.cache
def my_numbers(n: int) -> tuple[pl.DataFrame, np.ndarray]:
    """n numbers in [0, 10^12) in column `my_number`, half valid; and the expected validity."""
    rng = np.random.default_rng(SEED)
    bases = rng.integers(0, 10**11, size=n)
    total = np.zeros(n, dtype=np.int64)
    rest = bases.copy()
    for weight in MY_NUMBER_WEIGHTS[::-1]:  # from the least significant digit
        total += weight * (rest % 10)
        rest //= 10
    check = (-total) % 11 % 10
    valid = rng.random(n) < 0.5
    wrong = (check + rng.integers(1, 10, size=n)) % 10
    numbers = bases * 10 + np.where(valid, check, wrong)
    return pl.DataFrame({"my_number": numbers}), valid


def my_number_is_valid_kernel() -> pl.Expr:
    return pl.col("my_number").map_batches(
        lambda s: pl.Series(kernels.my_number_is_valid(s.to_numpy())),
        return_dtype=pl.Boolean,
        is_elementwise=True,
    )


def my_number_is_valid_polars() -> pl.Expr:
    """The fastest pure-Polars form found: 11 divisions, no modulo per digit.

    With q_k = n // 10^(k+1) (so the k-th base digit from the right is q_k − 10·q_{k+1}), the sum
    Σ w_k·d_k telescopes to Σ q_k·(w_k − 10·w_{k−1}).
    """
    n = pl.col("my_number")
    weights = MY_NUMBER_WEIGHTS[::-1]  # w_k, k = 0 for the least significant base digit
    total = None
    for k, weight in enumerate(weights):
        term = (n // 10 ** (k + 1)) * (weight - (10 * weights[k - 1] if k else 0))
        total = term if total is None else total + term
    return n.is_between(0, 10**12 - 1) & (n % 10 == (11 - total % 11) % 11 % 10)


def my_number_is_valid_polars_digits() -> pl.Expr:
    """The obvious pure-Polars form, digit by digit (n // 10^k % 10), for reference."""
    n = pl.col("my_number")
    weights = MY_NUMBER_WEIGHTS[::-1]
    total = pl.sum_horizontal([(n // 10 ** (k + 1) % 10) * w for k, w in enumerate(weights)])
    return n.is_between(0, 10**12 - 1) & (n % 10 == (11 - total % 11) % 11 % 10)


HALF_WIDTH_KANA = np.array([ord(c) for c in "ｱｲｳｴｵｶｷｸｹｺｻｼｽｾｿﾀﾁﾂﾃﾄﾅﾆﾇﾈﾉﾊﾋﾌﾍﾎﾏﾐﾑﾒﾓﾔﾕﾖﾗﾘﾙﾚﾛﾜｦﾝｯｬｭｮﾞﾟｰ"])


@functools.cache
def kana_name_pairs(n: int) -> tuple[pl.Series, pl.Series]:
    """n pairs of half-width kana names of 2–12 letters; the right one a typo'd copy or a stranger.

    Built as code-point matrices viewed as fixed-width numpy strings (trailing NULs drop out).
    """
    rng = np.random.default_rng(SEED)
    width = 12
    lengths = rng.integers(2, width + 1, size=n)
    left = HALF_WIDTH_KANA[rng.integers(0, HALF_WIDTH_KANA.size, size=(n, width))].astype(np.uint32)
    left[np.arange(width) >= lengths[:, None]] = 0
    right = left.copy()
    rows = np.arange(n)
    position = rng.integers(0, lengths - 1)
    swap = rng.random(n) < 0.4  # adjacent transposition
    right[rows[swap], position[swap]] = left[rows[swap], position[swap] + 1]
    right[rows[swap], position[swap] + 1] = left[rows[swap], position[swap]]
    substitute = rng.random(n) < 0.4
    right[rows[substitute], position[substitute]] = HALF_WIDTH_KANA[
        rng.integers(0, HALF_WIDTH_KANA.size, size=substitute.sum())]
    stranger = rng.random(n) < 0.3
    right[stranger] = np.roll(left, 1, axis=0)[stranger]
    as_text = np.dtype(f"<U{width}")
    return (
        pl.Series("name_l", left.view(as_text).ravel()),
        pl.Series("name_r", right.view(as_text).ravel()),
    )


@functools.cache
def match_graph(n_edges: int) -> tuple[pl.Series, pl.Series, pl.Series]:
    """Resident ids (2 per edge, sparse in 0..10^10) and n_edges random matches between them."""
    rng = np.random.default_rng(SEED)
    node_ids = np.unique(rng.integers(0, 10**10, size=2 * n_edges))
    edges = rng.choice(node_ids, size=(n_edges, 2))
    return (
        pl.Series("resident_id", node_ids),
        pl.Series("resident_id_l", edges[:, 0]),
        pl.Series("resident_id_r", edges[:, 1]),
    )


# --- benchmarks ----------------------------------------------------------------------------------

MY_NUMBER_IMPLEMENTATIONS = {
    "kernel": my_number_is_valid_kernel,
    "polars": my_number_is_valid_polars,
    "polars_digits": my_number_is_valid_polars_digits,
}


@pytest.mark.benchmark(warmup=True, warmup_iterations=1)
@pytest.mark.parametrize("implementation", list(MY_NUMBER_IMPLEMENTATIONS))
@pytest.mark.parametrize("n", [1_000_000, pytest.param(10_000_000, marks=pytest.mark.slow)])
def test_my_number_is_valid(benchmark, n: int, implementation: str) -> None:
    frame, expected = my_numbers(n)
    expression = MY_NUMBER_IMPLEMENTATIONS[implementation]().alias("valid")
    benchmark.group = f"my_number_is_valid|{n}"
    result = benchmark(lambda: frame.select(expression))
    assert (result["valid"].to_numpy() == expected).all()


@pytest.mark.benchmark(warmup=True, warmup_iterations=1)
@pytest.mark.parametrize("n", [1_000_000])
def test_jaro_winkler(benchmark, n: int) -> None:
    left, right = kana_name_pairs(n)
    benchmark.group = f"jaro_winkler|{n}"
    result = benchmark(lambda: similarity.jaro_winkler(left, right))
    assert result.len() == n and result.null_count() == 0
    assert result.is_between(0.0, 1.0).all()
    assert (result == 1.0).mean() > 0.1  # untouched copies


@pytest.mark.benchmark(warmup=True, warmup_iterations=1)
@pytest.mark.parametrize("n_edges", [1_000_000])
def test_connected_components(benchmark, n_edges: int) -> None:
    node_ids, left, right = match_graph(n_edges)
    benchmark.group = f"connected_components|{n_edges}"
    result = benchmark(lambda: similarity.components(node_ids, left, right))
    assert result.len() == node_ids.len()
    assert (result <= node_ids).all()
    # both ends of every edge are in the same component
    ids, component = node_ids.to_numpy(), result.to_numpy()
    left_index, right_index = np.searchsorted(ids, left.to_numpy()), np.searchsorted(ids, right.to_numpy())
    assert (component[left_index] == component[right_index]).all()
