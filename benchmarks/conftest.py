"""Shared benchmark fixtures: seeded generator inputs at 100k, 1M and 10M residents, and the night's
stages up to the checks (members, resolved households) run once per session.

Generated inputs are cached under `<system temp>/kyufu-benchmarks/inputs-<residents>-seed<seed>/`,
so a second benchmark session reuses them (the 10M set takes about a minute to generate). A set
counts as complete only once its `manifest.json` records the same residents and seed; a
half-written folder is generated again. Delete the folder to force a fresh set.

The 1M and 10M fixtures are only requested by benchmarks marked `slow`.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from engine import entitle, payout, validate
from engine.config import RunConfig
from pipelines import generate, nightly

SEED = 0
# after the application period, as in tests/pipelines/test_generated_night.py: every application
# has arrived, so the application checks see all of them
RUN_DATE = date(2020, 9, 30)
CACHE_ROOT = Path(tempfile.gettempdir()) / "kyufu-benchmarks"


def cached_inputs(residents: int, seed: int = SEED) -> Path:
    """The generator's output for (residents, seed): generated once, then reused across sessions."""
    folder = CACHE_ROOT / f"inputs-{residents}-seed{seed}"
    manifest = folder / "manifest.json"
    if manifest.exists():
        recorded = json.loads(manifest.read_text(encoding="utf-8"))
        if recorded.get("residents") == residents and recorded.get("seed") == seed:
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
    """Run ingest → validate → persons → entitle → payees as nightly.run does, in memory.

    The checkpoints nightly.run sinks to Parquet are collected into memory instead, so that a
    check benchmark reads ready tables and times only the check.
    """
    cfg = cfg or RunConfig()
    scanned = nightly.plan_inputs(inputs)
    residents_lf = validate.checked_residents(scanned["residents"][0], RUN_DATE).collect().lazy()
    accounts = validate.checked_accounts(scanned["accounts"][0], RUN_DATE).collect().lazy()
    household_ids = residents_lf.filter(pl.col("reject_reason").is_null()).select("household_id")
    applications = validate.checked_applications(
        scanned["applications"][0], household_ids, RUN_DATE).collect().lazy()
    valid_residents = residents_lf.filter(pl.col("reject_reason").is_null())
    # a fresh state folder: every My Number gets a new key, in order of first appearance
    with tempfile.TemporaryDirectory() as empty_state:
        keys = nightly.person_keys(Path(empty_state), valid_residents)
    usable_accounts = accounts.filter(pl.col("reject_reason").is_null() & ~pl.col("is_pending"))
    usable_applications = applications.filter(pl.col("reject_reason").is_null() & ~pl.col("is_pending"))
    members = entitle.eligible_members(
        valid_residents.join(keys.lazy(), on="my_number", how="left", maintain_order="left"),
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
