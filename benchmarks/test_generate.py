"""The synthetic-data generator end to end: residents in, every dataset written as Parquet.

Off by default (`--benchmark-disable` in addopts: each case then runs once, as a test). Measure:

    .venv/bin/pytest benchmarks/test_generate.py --benchmark-enable -m ""

`extra_info` records residents per wall second and per CPU second (the per-core rate).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.synth import vocabulary
from pipelines.generate import generate

SEED = 0


@pytest.mark.parametrize(
    "residents", [100_000, pytest.param(1_000_000, marks=pytest.mark.slow)])
def test_generate(benchmark, tmp_path: Path, residents: int) -> None:
    # the bank master and name lists load once per process: keep them out of the timing
    vocabulary.names(), vocabulary.branches(), vocabulary.municipalities()
    benchmark.group = f"generate|{residents}"
    report = benchmark.pedantic(generate, args=(residents, SEED, tmp_path), rounds=1, iterations=1)
    benchmark.extra_info["residents_per_second"] = round(residents / report.seconds)
    benchmark.extra_info["residents_per_cpu_second"] = round(residents / report.cpu_seconds)
    assert report.rows["residents"] >= residents
    assert report.rows["transactions"] > report.rows["wallets"] > 0
