"""Shared benchmark fixtures: seeded generator inputs at 100k, 1M and 10M residents, and the night's
stages up to the checks (members, resolved households) run once per session.

Generated inputs are cached under `<system temp>/kyufu-benchmarks/inputs-<residents>-seed<seed>/`,
so a second benchmark session reuses them (the 10M set takes about a minute to generate). A set
counts as complete only once its `manifest.json` records the same residents and seed; a
half-written folder is generated again. Delete the folder to force a fresh set.

The 10M fixtures are only requested by benchmarks marked `slow`; the 1M ones run by default (each
stage at 1M: test_stages.py, test_checks.py), so a default run generates the 1M set once (~15 s)
when the cache is empty, as in CI.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from engine import entitle, ingest, payout, schemas, validate
from engine.config import RunConfig
from engine.ingest import ROW
from pipelines import generate

SEED = 0
# after the application period, as in tests/pipelines/test_generated_night.py: every application
# has arrived, so the application checks see all of them
RUN_DATE = date(2020, 9, 30)
CACHE_ROOT = Path(tempfile.gettempdir()) / "kyufu-benchmarks"


def cached_inputs(residents: int, seed: int = SEED) -> Path:
    """The generator's output for (residents, seed): generated once, then reused across sessions."""
    folder = CACHE_ROOT / f"inputs-{residents}-seed{seed}"
    if generate.is_generated(folder, residents, seed):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    generate.generate(residents, seed, folder, workers=2 if residents >= 1_000_000 else 1)
    return folder


@dataclass(frozen=True)
class Night:
    """The night's tables as the checks stage receives them (pipelines/nightly.py)."""

    residents: int
    inputs: Path
    members: pl.DataFrame  # entitle.eligible_members, collected
    resolved: pl.DataFrame  # payout.resolved_accounts, collected
    cfg: RunConfig


def night_up_to_checks(inputs: Path, residents: int, cfg: RunConfig | None = None) -> Night:
    """Run ingest → validate → persons → entitle → payees as pipelines/nightly.py does, in memory.

    The checkpoints nightly.run sinks to Parquet are collected into memory instead, so that a
    check benchmark reads ready tables and times only the check.
    """
    cfg = cfg or RunConfig()
    scanned = {contract.name: ingest.scan(contract, inputs)[0]
               for contract in (schemas.RESIDENTS, schemas.ACCOUNTS, schemas.APPLICATIONS)}
    residents_lf = validate.checked_residents(scanned["residents"], RUN_DATE).collect().lazy()
    accounts = validate.checked_accounts(scanned["accounts"], RUN_DATE).collect().lazy()
    household_ids = residents_lf.filter(pl.col("reject_reason").is_null()).select("household_id")
    applications = validate.checked_applications(
        scanned["applications"], household_ids, RUN_DATE).collect().lazy()
    valid_residents = residents_lf.filter(pl.col("reject_reason").is_null())
    # the first night's person keys (nightly.person_keys with an empty state): counters in order
    # of each My Number's first appearance on the register
    keys = (
        valid_residents.group_by("my_number").agg(pl.col(ROW).min()).sort(ROW)
        .select("my_number", person_key=pl.int_range(1, pl.len() + 1, dtype=pl.Int64))
    )
    usable_accounts = accounts.filter(pl.col("reject_reason").is_null() & ~pl.col("is_pending"))
    usable_applications = applications.filter(pl.col("reject_reason").is_null() & ~pl.col("is_pending"))
    members = entitle.eligible_members(
        valid_residents.join(keys, on="my_number", how="left", maintain_order="left"),
        entitle.declined_members(usable_applications),
        cfg.benefit,
    ).collect()
    households = entitle.household_entitlements(members.lazy(), cfg.benefit).collect()
    payees = entitle.payees(members.lazy()).collect()
    resolved = payout.resolved_accounts(
        households.lazy(), payees.lazy(), usable_accounts, usable_applications).collect()
    return Night(residents=residents, inputs=inputs, members=members, resolved=resolved, cfg=cfg)


@pytest.fixture(scope="session")
def inputs_100k() -> Path:
    return cached_inputs(100_000)


@pytest.fixture(scope="session")
def inputs_1m() -> Path:
    return cached_inputs(1_000_000)


@pytest.fixture(scope="session")
def inputs_10m() -> Path:
    return cached_inputs(10_000_000)


@pytest.fixture(scope="session")
def night_100k(inputs_100k: Path) -> Night:
    return night_up_to_checks(inputs_100k, 100_000)


@pytest.fixture(scope="session")
def night_1m(inputs_1m: Path) -> Night:
    return night_up_to_checks(inputs_1m, 1_000_000)


@pytest.fixture(scope="session")
def night_10m(inputs_10m: Path) -> Night:
    return night_up_to_checks(inputs_10m, 10_000_000)


@pytest.fixture(scope="session")
def night(request: pytest.FixtureRequest) -> Night:
    """The night for the `residents` a benchmark is parametrised with (100k, 1M or 10M)."""
    residents = request.param if hasattr(request, "param") else 100_000
    name = {100_000: "night_100k", 1_000_000: "night_1m", 10_000_000: "night_10m"}[residents]
    return request.getfixturevalue(name)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """After the benchmark tables: for each group that times a kernel against an alternative, the
    ratio of their medians (alternative / kernel); for each case that records the `rows` it works
    through, rows per second. Only when benchmarks were measured."""
    session = getattr(terminalreporter.config, "_benchmarksession", None)
    if session is None or session.disabled:
        return
    by_group: dict[str, dict[str, float]] = {}
    for bench in session.benchmarks:
        implementation = bench.extra_info.get("implementation")
        if implementation and bench.stats:
            by_group.setdefault(bench.group, {})[implementation] = bench.stats.median
    lines = []
    for group, medians in sorted(by_group.items()):
        if "kernel" not in medians or len(medians) < 2:
            continue
        for name, median in sorted(medians.items()):
            if name != "kernel":
                lines.append(f"{group}: kernel {medians['kernel']:.4f} s, {name} {median:.4f} s, "
                             f"{name} / kernel = {median / medians['kernel']:.1f}x")
    if lines:
        terminalreporter.write_sep("-", "kernel vs alternative (median seconds)")
        for line in lines:
            terminalreporter.write_line(line)
    rates = [f"{bench.group} {bench.name}: {bench.stats.median:.3f} s, {bench.extra_info['rows']:,} "
             f"{bench.extra_info.get('rows_of', 'rows')}, {bench.extra_info['rows'] / bench.stats.median:,.0f} rows/s"
             for bench in session.benchmarks if bench.stats and bench.extra_info.get("rows")]
    if rates:
        terminalreporter.write_sep("-", "rows per second (rows / median)")
        for line in rates:
            terminalreporter.write_line(line)
