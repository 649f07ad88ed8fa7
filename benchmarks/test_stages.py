"""Each stage of the nightly run (pipelines/nightly.py `_compute`) on its own, and the whole night
plain and sharded, on seeded generator inputs: at 1M residents by default; 10M, and the sharded
night at 1M, marked slow.

Off by default (`--benchmark-disable` in addopts: each case then runs once, as a test). Measure,
save, and compare with the last saved run (saved under `.benchmarks/`, gitignored):

    .venv/bin/pytest benchmarks/test_stages.py --benchmark-enable --benchmark-autosave     # 1M
    .venv/bin/pytest benchmarks/test_stages.py --benchmark-enable --benchmark-compare      # again, vs the last
    .venv/bin/pytest benchmarks/test_stages.py --benchmark-enable -m "" -k "not 10000000"  # + the sharded night
    .venv/bin/pytest benchmarks/test_stages.py --benchmark-enable -m slow                  # 10M (many minutes)

Every stage runs from an empty state on the night of the end of the campaign (as national.py: the
biggest night), and each timed call executes its stage in full: checkpoints sunk to Parquet, frames
collected, files written. A stage's inputs are the earlier stages' outputs, computed once per
session (`PreparedNight`); a stage that writes gets a fresh folder each round (made in the untimed
setup). `extra_info` records the rows the stage works through (`rows`, as national.py counts
them), so that rows per second is `rows / median` in the saved JSON.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from engine import checks, outputs, payout, state
from engine.config import RunConfig
from pipelines import night_steps as steps
from pipelines import nightly

CFG = RunConfig()
RUN_DATE = date(2021, 12, 31)  # as national.py: every application and transaction has arrived
FOLDER = RUN_DATE.isoformat()
ROUNDS = {1_000_000: 3, 10_000_000: 1}
NIGHT_ROUNDS = {1_000_000: 2, 10_000_000: 1}
INPUTS = {1_000_000: "inputs_1m", 10_000_000: "inputs_10m"}  # benchmarks/conftest.py
EMPTY = state.EMPTY


class PreparedNight:
    """The night's stages at one size, chained as `_compute` chains them from an empty state.

    `run_<stage>(folder)` does that stage's work, reading the earlier stages' outputs (the
    properties; NEEDS lists them). Each output is computed once, when a later stage first needs
    it, under `root/prepared/`; or it is kept from the stage's own benchmark (its last round), so
    that the default run, one round per benchmark, runs each stage once.
    """

    NEEDS: dict[str, tuple[str, ...]] = {
        "validate": (), "persons": ("validate",), "entitle": ("validate", "persons"),
        "payees": ("validate", "entitle"), "checks": ("entitle", "payees"), "standing": ("entitle", "checks"),
        "points": ("validate", "persons"), "outputs": ("analyst_inputs",),
    }

    def __init__(self, residents: int, inputs: Path, root: Path) -> None:
        self.residents, self.inputs, self.root = residents, inputs, root
        self.scanned = nightly.plan_inputs(inputs)
        self.plan = nightly._Plan("night", EMPTY, FOLDER)
        self.decisions = state.SCHEMAS["decisions"].to_frame()
        self._outputs: dict[str, Any] = {}

    def output(self, stage: str) -> Any:
        if stage not in self._outputs:
            self._outputs[stage] = getattr(self, f"run_{stage}")(fresh_folder(self.root / "prepared" / stage))
        return self._outputs[stage]

    def keep(self, stage: str, output: Any) -> None:
        """A benchmark's result becomes the stage's output, unless it was prepared already."""
        self._outputs.setdefault(stage, output)

    # ---- the stages, as `_compute` runs them ----------------------------------------------------

    def run_validate(self, folder: Path) -> nightly.Validated:
        return nightly.validated(self.scanned, folder, RUN_DATE)

    def run_persons(self, folder: Path) -> pl.DataFrame:
        return nightly.person_keys(EMPTY.table("persons"), self.validated.valid_residents)

    def run_entitle(self, folder: Path) -> tuple[pl.LazyFrame, pl.LazyFrame, pl.LazyFrame]:
        return nightly.entitled(self.validated, self.keys.lazy(), EMPTY.scan("paid_persons"), CFG, folder)

    def run_payees(self, folder: Path) -> pl.DataFrame:
        _, households, payees = self.entitled
        v = self.validated
        return payout.resolved_accounts(households, payees, v.usable_accounts, v.usable_applications).collect()

    def run_checks(self, folder: Path) -> tuple[pl.DataFrame, int]:
        return checks.with_holds(self.resolved, self.entitled[0], CFG.checks)

    def run_standing(self, folder: Path) -> tuple[nightly.Settled, nightly.RunReport]:
        members, households, _ = self.entitled
        report = self.report(folder)
        settled = nightly.settled(EMPTY, FOLDER, "night", households, self.checked[0], members, self.decisions,
                                  folder, RUN_DATE, CFG, report)
        return settled, report

    def run_points(self, folder: Path) -> tuple[dict, nightly.RunReport]:
        persons = self.validated.valid_residents.join(self.keys.lazy(), on="my_number", how="left").select(
            "my_number", "person_key", "died_on").unique("my_number", keep="first", maintain_order=True)
        report = self.report(folder)
        mynapoint = steps.mynapoint_night(self.scanned, persons, EMPTY, self.decisions, self.plan, folder,
                                          RUN_DATE, CFG, report)
        return mynapoint, report

    def run_outputs(self, folder: Path) -> dict[str, Path]:
        tables = steps.analyst_tables(folder, RUN_DATE, **self.analyst_inputs)
        outputs.write_duckdb(folder / "analyst.duckdb", tables)
        return tables

    # ---- their outputs --------------------------------------------------------------------------

    @property
    def validated(self) -> nightly.Validated:
        return self.output("validate")

    @property
    def keys(self) -> pl.DataFrame:
        return self.output("persons")

    @property
    def entitled(self) -> tuple[pl.LazyFrame, pl.LazyFrame, pl.LazyFrame]:
        """members, households, payees: scans of the entitle checkpoints."""
        return self.output("entitle")

    @property
    def resolved(self) -> pl.DataFrame:
        return self.output("payees")

    @property
    def checked(self) -> tuple[pl.DataFrame, int]:
        return self.output("checks")

    @property
    def settled(self) -> tuple[nightly.Settled, nightly.RunReport]:
        return self.output("standing")

    @property
    def mynapoint(self) -> tuple[dict, nightly.RunReport]:
        return self.output("points")

    @property
    def analyst_inputs(self) -> dict[str, Any]:
        return self.output("analyst_inputs")

    def run_analyst_inputs(self, folder: Path) -> dict[str, Any]:
        """What `_compute` hands the outputs stage: the tables after standing and points, the
        rejects of both, the run history with tonight's row."""
        (settled, report), (mynapoint, points_report) = self.settled, self.mynapoint
        rejects_path = folder / "rejects_all.parquet"
        steps.sink(pl.concat([self.validated.rejected, mynapoint["rejects"].lazy()], how="diagonal_relaxed"),
                   rejects_path)
        report = dataclasses.replace(report, counts={**report.counts, **points_report.counts},
                                     totals={**settled.figures, **mynapoint["figures"]})
        return {
            "decided": settled.decided, "in_files": settled.in_files, "members": self.entitled[0],
            "rejects_path": rejects_path, "holds": settled.tables["holds"],
            "ledger_all": pl.concat([settled.ledger_after, mynapoint["ledger"]], how="vertical_relaxed"),
            "runs": steps.runs_after(EMPTY.table("runs"), report, self.plan, EMPTY),
            "files": settled.tables["files"], "decisions": self.decisions, "points_outputs": mynapoint["analyst"],
        }

    # ---- helpers --------------------------------------------------------------------------------

    def report(self, folder: Path) -> nightly.RunReport:
        return nightly.RunReport(run_date=RUN_DATE, run_dir=folder)

    @property
    def persons(self) -> int:
        return self.entitled[0].select(pl.len()).collect().item()

    @property
    def households(self) -> int:
        return self.entitled[1].select(pl.len()).collect().item()


def fresh_folder(path: Path) -> Path:
    """`path`, emptied: removed if there, made again."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="session")
def prepared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PreparedNight]:
    residents = request.param
    root = tmp_path_factory.mktemp(f"stages-{residents}-")
    yield PreparedNight(residents, request.getfixturevalue(INPUTS[residents]), root)
    shutil.rmtree(root, ignore_errors=True)


def timed_stage(benchmark, night: PreparedNight, stage: str, rows: Callable[[Any], int], rows_of: str) -> Any:
    """Time `night.run_<stage>` over ROUNDS rounds, each in a fresh folder, its inputs made
    beforehand; record the rows it works through."""
    for need in night.NEEDS[stage]:
        night.output(need)
    benchmark.group = f"stages|{night.residents}"
    folder = night.root / "timed" / stage

    def setup():
        return (fresh_folder(folder),), {}

    output = benchmark.pedantic(getattr(night, f"run_{stage}"), setup=setup, rounds=ROUNDS[night.residents],
                                iterations=1)
    benchmark.extra_info.update(stage=stage, residents=night.residents, rows=rows(output), rows_of=rows_of)
    night.keep(stage, output)
    return output


# ---- the whole night ---------------------------------------------------------------------------------

# the sharded night at 1M is slow too: CI's default run keeps within ~2 minutes of 1M cases, the
# stage cases already run the plain night's stages, and tests/ checks sharded nights against plain
SLOW = pytest.mark.slow
NIGHTS = [
    pytest.param(1_000_000, 0, id="1000000-plain"),
    pytest.param(1_000_000, 2, id="1000000-sharded", marks=SLOW),
    pytest.param(10_000_000, 0, id="10000000-plain", marks=SLOW),
    pytest.param(10_000_000, 2, id="10000000-sharded", marks=SLOW),
]
_entitled_yen: dict[tuple[int, int], int] = {}  # (residents, shards) → the night's entitled yen


@pytest.mark.parametrize("residents, shards", NIGHTS)
def test_night(benchmark, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               residents: int, shards: int) -> None:
    """nightly.run from an empty state into fresh folders: in one piece (shards=0) or in 2 shards."""
    inputs = request.getfixturevalue(INPUTS[residents])
    benchmark.group = f"whole_night|{residents}"
    folder = tmp_path_factory.mktemp(f"night-{residents}-{shards}-")

    def setup():
        fresh_folder(folder)
        return (inputs, folder / "state", folder / "out", RUN_DATE, CFG), {"shards": shards}

    report = benchmark.pedantic(nightly.run, setup=setup, rounds=NIGHT_ROUNDS[residents], iterations=1)
    benchmark.extra_info.update(stage="night", residents=residents, shards=shards,
                                rows=report.counts["residents_rows"], rows_of="residents",
                                stage_seconds=report.stage_seconds)
    shutil.rmtree(folder, ignore_errors=True)
    assert report.shards == shards and report.state_version == 1
    assert report.totals["entitled_yen"] > 0
    _entitled_yen[(residents, shards)] = report.totals["entitled_yen"]
    if len({yen for (n, _), yen in _entitled_yen.items() if n == residents}) > 1:
        pytest.fail(f"plain and sharded nights disagree: {_entitled_yen}")


# ---- each stage ------------------------------------------------------------------------------------

BY_SIZE = pytest.mark.parametrize("prepared", [1_000_000, pytest.param(10_000_000, marks=SLOW)], indirect=True)


@BY_SIZE
def test_validate(benchmark, prepared: PreparedNight) -> None:
    v = timed_stage(benchmark, prepared, "validate", lambda v: sum(v.rows.values()),
                    "residents + accounts + applications")
    assert v.rows["residents"] >= prepared.residents
    assert 0 < v.summary["rows"].sum() < v.rows["residents"] / 100


@BY_SIZE
def test_persons(benchmark, prepared: PreparedNight) -> None:
    residents = prepared.validated.rows["residents"]
    keys = timed_stage(benchmark, prepared, "persons", lambda _: residents, "residents")
    assert keys["person_key"].to_list() == list(range(1, keys.height + 1))
    assert keys["my_number"].is_unique().all()


@BY_SIZE
def test_entitle(benchmark, prepared: PreparedNight) -> None:
    residents = prepared.validated.rows["residents"]
    members, households, payees = timed_stage(benchmark, prepared, "entitle", lambda _: residents, "residents")
    yen = households.select(pl.col("entitled_yen").sum()).collect().item()
    assert yen > 0 and yen % CFG.benefit.amount_per_person_yen == 0
    assert 0 < payees.select(pl.len()).collect().item() <= prepared.households < prepared.persons <= residents


@BY_SIZE
def test_payees(benchmark, prepared: PreparedNight) -> None:
    resolved = timed_stage(benchmark, prepared, "payees", lambda resolved: resolved.height, "households")
    assert resolved["household_id"].is_unique().all()
    assert 0 < resolved.height <= prepared.households
    assert set(resolved["account_source"]) <= {"linked_account", "application", "none"}


@BY_SIZE
def test_checks(benchmark, prepared: PreparedNight) -> None:
    checked, _ = timed_stage(benchmark, prepared, "checks", lambda _: prepared.persons, "persons")
    held = checked.filter(pl.col("hold_reasons").list.len() > 0).height
    assert checked.height == prepared.resolved.height
    assert 0 < held < checked.height / 20


@BY_SIZE
def test_standing(benchmark, prepared: PreparedNight) -> None:
    settled, report = timed_stage(benchmark, prepared, "standing", lambda out: out[0].decided.height, "households")
    assert settled.decided.height == prepared.households
    assert report.files and settled.figures["paid_tonight_yen"] > 0


@BY_SIZE
def test_points(benchmark, prepared: PreparedNight) -> None:
    mynapoint, report = timed_stage(benchmark, prepared, "points", lambda out: out[1].counts["transactions_rows"],
                                    "transactions")
    assert report.counts["transactions_rows"] > prepared.residents
    assert mynapoint["files"] and mynapoint["state"]["points_persons"].height > 0


@BY_SIZE
def test_outputs(benchmark, prepared: PreparedNight) -> None:
    rows = prepared.persons + prepared.households
    tables = timed_stage(benchmark, prepared, "outputs", lambda _: rows, "persons + households")
    assert {"households", "persons", "payouts", "ledger", "rejects", "points"} <= set(tables)
    assert pl.scan_parquet(tables["households"]).select(pl.len()).collect().item() == prepared.households
