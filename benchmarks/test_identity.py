"""The fuzzy identity check on generated nights, and its kernels against their alternatives.

Off by default (`--benchmark-disable` in addopts: each case then runs once, as a test). Measure:

    .venv/bin/pytest benchmarks/test_identity.py --benchmark-enable -m ""          # 100k, 1M and 10M
    .venv/bin/pytest benchmarks/test_identity.py --benchmark-enable -m "not slow"  # 100k and 1M

Inputs come from benchmarks/conftest.py (seeded generator, cached in the system temp folder), run
up to the checks once per session, so each case times only its stage. `extra_info` records the
pairs compared and the households held.

Time and peak memory of the whole check, old against new, each in a fresh process (pytest-benchmark
records no memory, and one process holding both would mix their peaks):

    PYTHONPATH=tests .venv/bin/python benchmarks/test_identity.py --residents 1000000 [--runs 2]

Measured so (2 cores, while other benchmarks ran: load 5 to 7), best run, peak RSS with the
night's members loaded (435 MiB at 1M, 1.8 GiB at 10M):

    residents  pairs compared  Polars pairs         kernel
    1M         30,177          3.7 s, 1,008 MiB     2.3 s,   769 MiB
    10M        2,996,691       48.7 s, 7,262 MiB    28.9 s, 4,962 MiB

identity_keys (the kana normalisation, the same for both) is most of the kernel's time; on the
10M keys alone, matched_pairs took 12.9 s and +0.8 GiB against the joins' 44.3 s and +3.0 GiB.

Alternatives:
- The check: the kernel (identity.fuzzy_identities, which walks the blocks and keeps only the
  matches) against the Polars joins it replaced (tests/identity_reference.py: every candidate
  pair listed, then scored): 30k pairs at 1M residents, 3.0M at 10M, about 460M at 125M.
- Jaro-Winkler: Polars has no string-similarity expression, and no combination of its list and
  string expressions reproduces the greedy windowed matching, so the alternative is an exact
  vectorised NumPy formulation over padded code-point matrices (one pass per (i, j) position pair
  in the window); it must agree with the kernel to 1e-12.
- Union-find: iterative min-label propagation in Polars (each node takes the smallest label among
  itself and its neighbours, joined over the edges, until no label changes).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine import identity, similarity
from engine.config import ChecksConfig
from identity_reference import candidate_pairs, matches, reference_matched_pairs

SLOW = pytest.mark.slow
SIZES = [100_000, pytest.param(1_000_000, marks=SLOW), pytest.param(10_000_000, marks=SLOW)]
FUZZY_SIZES = [100_000, 1_000_000, pytest.param(10_000_000, marks=SLOW)]
NUMBA = pytest.mark.benchmark(warmup=True, warmup_iterations=1)


# --- alternatives -------------------------------------------------------------------------------------


def code_points(names: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(n × width uint32 code points, zero-padded; lengths) of a string column without nulls."""
    text = np.asarray(names.to_list(), dtype=np.str_)
    width = max(text.dtype.itemsize // 4, 1)
    matrix = text.astype(f"<U{width}").view(np.uint32).reshape(len(text), width)
    return matrix, names.str.len_chars().to_numpy().astype(np.int64)


def jaro_winkler_numpy(left: pl.Series, right: pl.Series, prefix_scale: float = 0.1,
                       max_prefix: int = 4) -> np.ndarray:
    """The kernel's Jaro-Winkler, vectorised over rows with NumPy (same window, same greedy
    first-free match, same transposition count and Winkler boost)."""
    a, la = code_points(left)
    b, lb = code_points(right)
    width = max(a.shape[1], b.shape[1])
    a = np.pad(a, ((0, 0), (0, width - a.shape[1])))
    b = np.pad(b, ((0, 0), (0, width - b.shape[1])))
    n = a.shape[0]
    window = np.maximum(np.maximum(la, lb) // 2 - 1, 0)
    matched_a = np.zeros((n, width), dtype=bool)
    matched_b = np.zeros((n, width), dtype=bool)
    widest = max(width // 2 - 1, 0)
    for i in range(width):
        live = i < la
        for j in range(max(0, i - widest), min(width, i + widest + 1)):
            # the first free, equal b[j] inside the window wins, as in the kernel's inner loop
            hit = (live & ~matched_a[:, i] & ~matched_b[:, j] & (j < lb)
                   & (abs(i - j) <= window) & (a[:, i] == b[:, j]))
            matched_a[:, i] |= hit
            matched_b[:, j] |= hit
    matches = matched_a.sum(axis=1)
    # matched characters in order on each side; count the positions where they differ
    in_order_a = np.take_along_axis(a, np.argsort(~matched_a, axis=1, kind="stable"), axis=1)
    in_order_b = np.take_along_axis(b, np.argsort(~matched_b, axis=1, kind="stable"), axis=1)
    out_of_order = ((in_order_a != in_order_b) & (np.arange(width) < matches[:, None])).sum(axis=1)
    m = matches.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        jaro = (m / la + m / lb + (m - out_of_order / 2.0) / m) / 3.0
    jaro = np.where(matches == 0, 0.0, jaro)
    shortest = np.minimum(la, lb)
    prefix = np.zeros(n, dtype=np.int64)
    running = np.ones(n, dtype=bool)
    for k in range(min(max_prefix, width)):
        running &= (k < shortest) & (a[:, k] == b[:, k])
        prefix += running
    score = jaro + prefix * prefix_scale * (1.0 - jaro)
    score = np.where((la == 0) | (lb == 0), 0.0, score)
    return np.where((la == 0) & (lb == 0), 1.0, score)


def components_polars(node_ids: pl.Series, left: pl.Series, right: pl.Series) -> tuple[pl.Series, int]:
    """Smallest node id per component by min-label propagation; and the rounds it took."""
    edges = pl.DataFrame({"node": left, "neighbour": right})
    edges = pl.concat([edges, edges.select(node="neighbour", neighbour="node")])
    labels = pl.DataFrame({"node": node_ids, "label": node_ids})
    rounds = 0
    while True:
        rounds += 1
        smallest_neighbour = (
            edges.join(labels, left_on="neighbour", right_on="node")
            .group_by("node").agg(pl.col("label").min().alias("neighbour_label"))
        )
        updated = labels.join(smallest_neighbour, on="node", how="left", maintain_order="left").select(
            "node", pl.min_horizontal("label", "neighbour_label").alias("label"))
        if (updated["label"] == labels["label"]).all():
            return updated["label"].alias("component_id"), rounds
        labels = updated


SCORES = {
    "kernel": similarity.jaro_winkler,
    "numpy": lambda left, right: pl.Series(jaro_winkler_numpy(left, right)),
}


def scored(pairs: pl.DataFrame, implementation: str) -> pl.DataFrame:
    """The three similarities the check computes, by one implementation."""
    score = SCORES[implementation]
    return pl.DataFrame({
        f"{half}similarity": score(pairs[f"{key}_l"], pairs[f"{key}_r"])
        for half, key in (("", "name_key"), ("family_", "family_key"), ("given_", "given_key"))
    })


# --- the check's stages ---------------------------------------------------------------------------


def fuzzy_identities_polars(members: pl.LazyFrame, cfg: ChecksConfig) -> tuple[pl.DataFrame, int]:
    """The check as it was before the kernel: every candidate pair listed by Polars joins, scored,
    filtered, then the same clusters and evidence."""
    matched, compared = reference_matched_pairs(identity.identity_keys(members).collect(), cfg)
    return identity.held_households(matched), compared


FUZZY = {"kernel": identity.fuzzy_identities, "polars": fuzzy_identities_polars}
MATCHED = {"kernel": identity.matched_pairs, "polars": reference_matched_pairs}


@pytest.fixture(scope="module")
def results_by_size() -> dict:
    return {}


@NUMBA
@pytest.mark.parametrize("implementation", list(FUZZY))
@pytest.mark.parametrize("night", FUZZY_SIZES, indirect=True)
def test_fuzzy_identities(benchmark, night, implementation: str, results_by_size: dict) -> None:
    benchmark.group = f"fuzzy_identities|{night.residents}"
    held, compared = benchmark(FUZZY[implementation], night.members.lazy(), night.cfg.checks)
    benchmark.extra_info.update(implementation=implementation, pairs_compared=compared, households_held=held.height)
    assert compared > 0 and 0 < held.height < night.resolved.height / 100
    # both implementations give the same holds and the same count (whichever ran first)
    first = results_by_size.setdefault(("fuzzy", night.residents), (held, compared))
    assert first[1] == compared and first[0].equals(held)


@pytest.fixture(scope="module")
def keys_by_size() -> dict:
    return {}


@NUMBA
@pytest.mark.parametrize("implementation", list(MATCHED))
@pytest.mark.parametrize("night", FUZZY_SIZES, indirect=True)
def test_matched_pairs(benchmark, night, implementation: str, keys_by_size: dict, results_by_size: dict) -> None:
    """Blocking and scoring alone, on identity keys built once (identity_keys, the kana
    normalisation, is about half of the whole check and the same for both)."""
    if night.residents not in keys_by_size:
        keys_by_size[night.residents] = identity.identity_keys(night.members.lazy()).collect()
    keys = keys_by_size[night.residents]
    benchmark.group = f"matched_pairs|{night.residents}"
    matched, compared = benchmark(MATCHED[implementation], keys, night.cfg.checks)
    benchmark.extra_info.update(implementation=implementation, pairs_compared=compared, pairs_matched=matched.height)
    assert compared > matched.height > 0
    first = results_by_size.setdefault(("matched", night.residents), (matched, compared))
    assert first[1] == compared and first[0].equals(matched)


@pytest.mark.parametrize("night", SIZES, indirect=True)
def test_candidate_pairs(benchmark, night) -> None:
    """Listing every candidate pair, as the Polars implementation does (the kernel never does)."""
    benchmark.group = f"candidate_pairs|{night.residents}"
    keys = identity.identity_keys(night.members.lazy())
    pairs = benchmark(lambda: candidate_pairs(keys).collect())
    benchmark.extra_info.update(pairs_compared=pairs.height, eligible_members=int(night.members["is_eligible"].sum()))
    assert pairs.height > 0
    assert (pairs["person_key_l"] < pairs["person_key_r"]).all()


@pytest.fixture(scope="module")
def candidate_pairs_by_size() -> dict:
    return {}


def pairs_of(night, cache: dict) -> pl.DataFrame:
    if night.residents not in cache:
        cache[night.residents] = candidate_pairs(identity.identity_keys(night.members.lazy())).collect()
    return cache[night.residents]


@NUMBA
@pytest.mark.parametrize("implementation", list(SCORES))
@pytest.mark.parametrize("night", SIZES, indirect=True)
def test_jaro_winkler_on_candidate_pairs(benchmark, night, implementation: str, candidate_pairs_by_size) -> None:
    pairs = pairs_of(night, candidate_pairs_by_size)
    benchmark.group = f"jaro_winkler_candidate_pairs|{night.residents}"
    benchmark.extra_info.update(implementation=implementation, pairs_compared=pairs.height)
    result = benchmark(scored, pairs, implementation)
    expected = scored(pairs, "kernel")
    assert result.height == pairs.height
    for column in expected.columns:
        assert np.allclose(result[column].to_numpy(), expected[column].to_numpy(), rtol=0, atol=1e-12)


COMPONENTS = {
    "kernel": lambda nodes, left, right: (similarity.components(nodes, left, right), None),
    "polars": components_polars,
}


@NUMBA
@pytest.mark.parametrize("implementation", list(COMPONENTS))
@pytest.mark.parametrize("edges", ["matched", "candidate"])
@pytest.mark.parametrize("night", SIZES, indirect=True)
def test_components(benchmark, night, edges: str, implementation: str, candidate_pairs_by_size) -> None:
    """Union-find on the night's matched pairs (what the check clusters) and, as a bigger graph
    from the same data, on all candidate pairs."""
    if (edges, implementation, night.residents) == ("candidate", "polars", 10_000_000):
        pytest.skip("min-label propagation over the 10M night's 2.9M candidate edges ran for over "
                    "10 minutes without finishing its rounds (the kernel takes 1.6 s)")
    pairs = pairs_of(night, candidate_pairs_by_size)
    if edges == "matched":
        pairs = matches(pairs, night.cfg.checks)
    left, right = pairs["person_key_l"], pairs["person_key_r"]
    nodes = pl.concat([left, right]).unique().sort()
    benchmark.group = f"components_{edges}_pairs|{night.residents}"
    benchmark.extra_info.update(implementation=implementation, edges=pairs.height, nodes=nodes.len())
    result, rounds = benchmark(COMPONENTS[implementation], nodes, left, right)
    if rounds is not None:
        benchmark.extra_info["polars_rounds"] = rounds
    assert result.to_list() == similarity.components(nodes, left, right).to_list()
    assert pairs.height > 0


# --- the alternatives agree with the kernels on awkward inputs -------------------------------------------


def test_jaro_winkler_numpy_agrees_with_the_kernel_on_edge_cases() -> None:
    left = pl.Series(["", "", "ｱ", "MARTHA", "DWAYNE", "DIXON", "ｺﾞﾄｳﾘ", "ﾔﾏﾀﾞﾀﾛｳ", "AB", "CRATE"])
    right = pl.Series(["", "ｱ", "", "MARHTA", "DUANE", "DICKSONX", "ｺﾞﾄｳﾅﾘｺ", "ﾔﾏﾀﾞﾀﾛ", "BA", "TRACE"])
    assert np.allclose(jaro_winkler_numpy(left, right), similarity.jaro_winkler(left, right).to_numpy(),
                       rtol=0, atol=1e-12)


def test_components_polars_agrees_with_the_kernel() -> None:
    nodes = pl.Series([1, 2, 3, 4, 5, 6, 7])
    left, right = pl.Series([7, 3, 2, 5]), pl.Series([3, 2, 1, 6])
    labels, rounds = components_polars(nodes, left, right)
    assert labels.to_list() == similarity.components(nodes, left, right).to_list() == [1, 1, 1, 4, 5, 5, 1]
    assert rounds >= 3  # 7 → 3 → 2 → 1 is a path: one hop per round



# --- old against new, time and peak memory, by hand ------------------------------------------------


def peak_rss_mib() -> int:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited through fork)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) // 1024


def measured(members_path: Path, implementation: str, runs: int) -> dict:
    """Run one implementation `runs` times on saved members, in this process; its figures."""
    members = pl.read_parquet(members_path)
    loaded = peak_rss_mib()
    seconds, cpu_seconds = [], []
    for _ in range(runs):
        began, began_cpu = time.perf_counter(), time.process_time()
        held, compared = FUZZY[implementation](members.lazy(), ChecksConfig())
        seconds.append(time.perf_counter() - began)
        cpu_seconds.append(time.process_time() - began_cpu)
    held.write_parquet(members_path.with_name(f"held-{implementation}.parquet"))
    return {"implementation": implementation, "seconds": [round(s, 2) for s in seconds],
            "cpu_seconds": [round(s, 2) for s in cpu_seconds],
            "peak_rss_mib": peak_rss_mib(), "members_loaded_rss_mib": loaded, "pairs_compared": compared,
            "households_held": held.height}


def main() -> None:
    parser = argparse.ArgumentParser(description="fuzzy_identities old (Polars pairs) against new (kernel)")
    parser.add_argument("--residents", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--child", choices=list(FUZZY), help=argparse.SUPPRESS)
    parser.add_argument("--members", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measured(args.members, args.child, args.runs)))
        return
    import conftest  # benchmarks/conftest.py: the cached inputs and the night up to the checks

    folder = Path(tempfile.mkdtemp(prefix="kyufu-identity-"))
    members_path = folder / "members.parquet"
    night = conftest.night_up_to_checks(conftest.cached_inputs(args.residents), args.residents)
    night.members.write_parquet(members_path)
    del night
    figures = {}
    for implementation in ("polars", "kernel"):
        child = subprocess.run(
            [sys.executable, __file__, "--child", implementation, "--members", str(members_path),
             "--runs", str(args.runs)], check=True, capture_output=True, text=True)
        figures[implementation] = json.loads(child.stdout.splitlines()[-1])
        print(json.dumps(figures[implementation]))
    same = pl.read_parquet(folder / "held-polars.parquet").equals(pl.read_parquet(folder / "held-kernel.parquet"))
    shutil.rmtree(folder)
    print(f"same holds and evidence: {same}; "
          f"same pairs compared: {figures['polars']['pairs_compared'] == figures['kernel']['pairs_compared']}")


if __name__ == "__main__":
    main()
