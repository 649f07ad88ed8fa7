"""Each check of the checks stage on generated nights, and the whole stage (checks.with_holds).

Off by default (`--benchmark-disable` in addopts: each case then runs once, as a test). Measure:

    .venv/bin/pytest benchmarks/test_checks.py --benchmark-enable                # 100k and 1M
    .venv/bin/pytest benchmarks/test_checks.py --benchmark-enable -m ""          # + 10M (slow)

Inputs come from benchmarks/conftest.py (seeded generator, cached in the system temp folder), run
up to the checks once per session: every case times only its check, collected inside the call.
"""

from __future__ import annotations

import polars as pl
import pytest

from engine import checks

SLOW = pytest.mark.slow
SIZES = [100_000, 1_000_000, pytest.param(10_000_000, marks=SLOW)]
NUMBA = pytest.mark.benchmark(warmup=True, warmup_iterations=1)


@pytest.mark.parametrize("night", SIZES, indirect=True)
def test_double_registrations(benchmark, night) -> None:
    benchmark.group = f"double_registrations|{night.residents}"
    members = night.members.lazy()
    held = benchmark(lambda: checks.double_registrations(members).collect())
    benchmark.extra_info.update(members=night.members.height, households_held=held.height)
    assert held.height > 0
    assert held["household_id"].is_unique().all()


@pytest.mark.parametrize("night", SIZES, indirect=True)
def test_shared_accounts(benchmark, night) -> None:
    benchmark.group = f"shared_accounts|{night.residents}"
    resolved = night.resolved.lazy()
    held = benchmark(lambda: checks.shared_accounts(resolved, night.cfg.checks).collect())
    benchmark.extra_info.update(households=night.resolved.height, households_held=held.height)
    assert 0 < held.height < night.resolved.height / 100


@NUMBA
@pytest.mark.parametrize("night", SIZES, indirect=True)
def test_row_holds(benchmark, night) -> None:
    benchmark.group = f"row_holds|{night.residents}"
    holds = benchmark(checks.row_holds, night.resolved, night.cfg.checks)
    benchmark.extra_info.update(
        households=night.resolved.height,
        names_compared=int((night.resolved["account_source"] != "none").sum()),
        **{f"held_{reason}": n for reason, n in holds.group_by("reason").len().iter_rows()},
    )
    assert set(holds["reason"]) >= {"holder_name_mismatch", "applicant_not_head", "conflicting_applications"}


@NUMBA
@pytest.mark.parametrize("night", SIZES, indirect=True)
def test_with_holds(benchmark, night) -> None:
    """The whole checks stage as the night runs it: every check, then one row per household."""
    benchmark.group = f"checks_stage|{night.residents}"
    checked, compared = benchmark(checks.with_holds, night.resolved, night.members.lazy(), night.cfg.checks)
    held = checked.filter(pl.col("hold_reasons").list.len() > 0).height
    benchmark.extra_info.update(households=checked.height, households_held=held, pairs_compared=compared)
    assert checked.height == night.resolved.height
    assert 0 < held < checked.height / 20
