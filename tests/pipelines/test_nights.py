"""Exactly once, night after night: sequences of nights on a generated sample with files sent,
holds released and denied, a night re-run, a correction run, and runs killed with SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

import tiny
import zengin_validator
from engine.config import RunConfig, ValidateConfig
from engine.errors import StateError
from engine.state import SCHEMAS, Store
from pipelines import generate, nightly, operations

NIGHTS = [date(2020, 5, 29), date(2020, 6, 30), date(2020, 7, 31), date(2020, 8, 31)]
CFG = RunConfig()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("nights") / "inputs"
    generate.generate(residents=20_000, seed=5, out=folder)
    return folder


def state_tables(state_dir: Path) -> dict[str, pl.DataFrame]:
    head = Store(state_dir).head()
    return {name: head.table(name) for name in SCHEMAS}


def assert_paid_exactly_once(state_dir: Path) -> None:
    t = state_tables(state_dir)
    payments, files, positions = t["payments"], t["files"], t["positions"]
    first = payments.filter(pl.col("kind") != "correction")
    assert first["household_id"].is_unique().all(), "a household was paid twice"
    assert t["paid_persons"]["person_key"].is_unique().all(), "a person was paid twice"
    live = files.filter(pl.col("status") != "superseded")
    # every payment sits in exactly one live file, and the live files carry exactly the payments
    assert payments.join(live, on="transfer_file", how="anti").is_empty()
    assert int(live["total_yen"].sum()) == int(payments["amount_yen"].sum())
    paid = payments.group_by("household_id").agg(pl.col("amount_yen").sum())
    both = paid.join(positions, on="household_id")
    assert (both["amount_yen"] == both["paid_yen"]).all()
    assert (positions["paid_yen"] <= positions["entitled_yen"]).all()


def test_a_sequence_of_nights_pays_every_household_once(inputs: Path, tmp_path: Path) -> None:
    state_dir, out = tmp_path / "state", tmp_path / "out"
    paid_tonight = {}
    for i, night in enumerate(NIGHTS):
        report = nightly.run(inputs, state_dir, out, night, CFG)
        paid_tonight[night] = report.totals["paid_tonight_yen"]
        assert_paid_exactly_once(state_dir)
        for path in (report.run_dir / "zengin").rglob("*.txt"):
            assert zengin_validator.validate_transfer_file(path.read_bytes()).ok, path
        produced = operations.files(state_dir, "produced")
        if i != 1:  # night 2's files are not sent: night 3 supersedes them and re-issues their payments
            operations.mark_sent(state_dir, produced["transfer_file"].to_list(), "ops", night)
        if i == 0:
            open_holds = operations.holds(state_dir)
            release = open_holds.filter(pl.col("hold_reasons").list.contains("holder_name_mismatch")).head(3)
            deny = open_holds.filter(pl.col("hold_reasons").list.contains("shared_account")).head(2)
            decisions = pl.concat([
                release.select("hold_id", decision=pl.lit("release")),
                deny.select("hold_id", decision=pl.lit("deny")),
            ]).with_columns(decided_by=pl.lit("supervisor"), decided_on=pl.lit(night), note=pl.lit("reviewed"))
            operations.record_decisions(state_dir, decisions, "test")
            released, denied = set(release["hold_id"]), set(deny["hold_id"])
    assert all(paid_tonight[n] > 0 for n in NIGHTS[:3])
    t = state_tables(state_dir)
    files = t["files"]
    night2 = files.filter(pl.col("produced_on") == NIGHTS[1])
    assert set(night2["status"]) == {"superseded"}
    night3 = files.filter(pl.col("produced_on") == NIGHTS[2])
    assert int(night3["total_yen"].sum()) >= int(night2["total_yen"].sum())
    holds = t["holds"].filter(pl.col("hold_id").is_in(list(released | denied)))
    assert dict(holds.select("hold_id", "status").iter_rows()) == {
        **{h: "released" for h in released}, **{h: "denied" for h in denied}}
    positions = t["positions"]
    released_households = [int(h.split("-")[1]) for h in released]
    assert (positions.filter(pl.col("household_id").is_in(released_households))["status"] == "paid").all()
    denied_households = [int(h.split("-")[1]) for h in denied]
    assert (positions.filter(pl.col("household_id").is_in(denied_households))["status"] == "denied").all()
    ledger = t["ledger"]
    assert ledger["debit_yen"].sum() == ledger["credit_yen"].sum()
    denied_yen = ledger.filter(pl.col("account") == "benefit_denied")["credit_yen"].sum()
    assert denied_yen == positions["denied_yen"].sum() > 0


def _published(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name not in ("analyst.duckdb", "timings.json")}


def _tables(run_dir: Path) -> dict[str, list]:
    with duckdb.connect(str(run_dir / "analyst.duckdb"), read_only=True) as con:
        names = [n for (n,) in con.sql("select table_name from information_schema.tables").fetchall()]
        return {n: con.sql(f"select * from {n}").fetchall() for n in sorted(names)}


def test_a_rerun_changes_nothing_and_reproduces_the_outputs_byte_for_byte(inputs: Path, tmp_path: Path) -> None:
    state_dir, out = tmp_path / "state", tmp_path / "out"
    first = nightly.run(inputs, state_dir, out, NIGHTS[0], CFG)
    nightly.run(inputs, state_dir, out, NIGHTS[1], CFG)
    before = _published(first.run_dir), _tables(first.run_dir), state_tables(state_dir)
    head = Store(state_dir).head().number
    shutil.rmtree(first.run_dir)  # the published night is lost: the re-run reproduces it
    again = nightly.run(inputs, state_dir, out, NIGHTS[0], CFG)
    assert again.mode == "rerun"
    assert _published(again.run_dir) == before[0]
    assert _tables(again.run_dir) == before[1]
    assert Store(state_dir).head().number == head
    assert all(state_tables(state_dir)[n].equals(before[2][n]) for n in SCHEMAS)
    third = nightly.run(inputs, state_dir, out, NIGHTS[0], CFG)
    assert third.unchanged


def test_changed_inputs_are_refused_unless_a_correction_pays_the_difference(tmp_path: Path) -> None:
    inputs = tiny.write_tiny(tmp_path / "inputs")
    cfg = RunConfig(validate=ValidateConfig(max_reject_ratio=0.5))
    state_dir, out = tmp_path / "state", tmp_path / "out"
    nightly.run(inputs, state_dir, out, tiny.RUN_DATE, cfg)
    # a member of paid household 2 is added to the register after the night
    residents = pl.read_parquet(inputs / "residents.parquet")
    newcomer = residents.filter(pl.col("household_id") == 2).with_columns(
        my_number=pl.lit(tiny.my_number(40)), is_head=pl.lit(False), given_name_kana=pl.lit("ハナ"))
    pl.concat([residents, newcomer]).write_parquet(inputs / "residents.parquet")
    with pytest.raises(StateError, match="already ran with other inputs"):
        nightly.run(inputs, state_dir, out, tiny.RUN_DATE, cfg)
    fixed = nightly.run(inputs, state_dir, out, tiny.RUN_DATE, cfg, correction="register: member added late")
    assert fixed.mode == "correction"
    assert fixed.run_dir.name == f"{tiny.RUN_DATE}-correction-1"
    payments = Store(state_dir).head().table("payments")
    corrections = payments.filter(pl.col("kind") == "correction")
    assert corrections.select("household_id", "amount_yen").rows() == [(2, 100_000)]
    assert fixed.totals["paid_tonight_yen"] == 100_000
    runs = Store(state_dir).head().table("runs")
    assert runs.filter(pl.col("mode") == "correction")["reason"].to_list() == ["register: member added late"]
    with pytest.raises(StateError, match="comes before the latest night"):
        nightly.run(inputs, state_dir, out, date(2020, 6, 1), cfg)


def test_a_night_that_does_not_reconcile_publishes_nothing(tmp_path: Path, monkeypatch) -> None:
    from engine import ledger
    from engine.errors import ReconciliationError

    inputs = tiny.write_tiny(tmp_path / "inputs")
    cfg = RunConfig(validate=ValidateConfig(max_reject_ratio=0.5))
    real = ledger.ledger_lines

    def one_line_lost(*args, **kwargs):
        return real(*args, **kwargs).slice(1)  # a bug that drops a journal line

    monkeypatch.setattr(ledger, "ledger_lines", one_line_lost)
    with pytest.raises(ReconciliationError, match="reconciliation failed; nothing was published") as failure:
        nightly.run(inputs, tmp_path / "state", tmp_path / "out", tiny.RUN_DATE, cfg)
    assert "ledger debits tonight" in str(failure.value)
    assert not (tmp_path / "out").exists()
    assert Store(tmp_path / "state").head().number == 0


# ---- crash safety: real runs killed with SIGKILL --------------------------------------------
CRASH_POINTS_FAST = ["validate", "standing", "outputs", "after-commit"]
CRASH_POINTS_SLOW = ["ingest", "persons", "entitle", "payees", "checks", "publish"]


def _kyufu(args: list[str], crash_at: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "KYUFU_CRASH_AT": crash_at or ""}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def _night_args(inputs: Path, state_dir: Path, out: Path, night: str, config: Path) -> list[str]:
    return ["run", "--inputs", str(inputs), "--state", str(state_dir), "--out", str(out), "--date", night,
            "--config", str(config)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("uninterrupted")
    inputs = tiny.write_tiny(root / "inputs")
    config = root / "lenient.toml"
    config.write_text("[validate]\nmax_reject_ratio = 0.5\n")
    for night in ("2020-06-30", "2020-07-31"):
        result = _kyufu(_night_args(inputs, root / "state", root / "out", night, config))
        assert result.returncode == 0, result.stderr
    return root, inputs, config


def _assert_same_as_uninterrupted(root: Path, reference: Path) -> None:
    for night in ("2020-06-30", "2020-07-31"):
        assert _published(root / "out" / night) == _published(reference / "out" / night)
    mine, theirs = state_tables(root / "state"), state_tables(reference / "state")
    for name in SCHEMAS:
        assert mine[name].equals(theirs[name]), name
    assert Store(root / "state").head().number == Store(reference / "state").head().number
    assert not list((root / "out").glob(".*")), "a staging folder was left behind"
    assert_paid_exactly_once(root / "state")


def _crash_and_recover(tmp_path: Path, uninterrupted, point: str) -> None:
    reference, inputs, config = uninterrupted
    state_dir, out = tmp_path / "state", tmp_path / "out"
    assert _kyufu(_night_args(inputs, state_dir, out, "2020-06-30", config)).returncode == 0
    before = state_tables(state_dir), Store(state_dir).head().number
    killed = _kyufu(_night_args(inputs, state_dir, out, "2020-07-31", config), crash_at=point)
    assert killed.returncode == -signal.SIGKILL
    if point != "after-commit":  # killed before the commit point: the state is as it was
        assert Store(state_dir).head().number == before[1]
        assert all(state_tables(state_dir)[n].equals(before[0][n]) for n in SCHEMAS)
        assert not (out / "2020-07-31").exists(), "a killed night published output"
    result = _kyufu(_night_args(inputs, state_dir, out, "2020-07-31", config))
    assert result.returncode == 0, result.stderr
    _assert_same_as_uninterrupted(tmp_path, reference)


@pytest.mark.parametrize("point", CRASH_POINTS_FAST)
def test_a_night_killed_at_any_stage_recovers_by_running_it_again(tmp_path: Path, uninterrupted, point: str) -> None:
    _crash_and_recover(tmp_path, uninterrupted, point)


@pytest.mark.slow
@pytest.mark.parametrize("point", CRASH_POINTS_SLOW)
def test_a_night_killed_at_any_other_stage_recovers(tmp_path: Path, uninterrupted, point: str) -> None:
    _crash_and_recover(tmp_path, uninterrupted, point)


@pytest.mark.parametrize("delay", [1.0, 2.5])
def test_a_night_killed_at_a_random_moment_recovers(tmp_path: Path, uninterrupted, delay: float) -> None:
    reference, inputs, config = uninterrupted
    state_dir, out = tmp_path / "state", tmp_path / "out"
    assert _kyufu(_night_args(inputs, state_dir, out, "2020-06-30", config)).returncode == 0
    process = subprocess.Popen([sys.executable, "-m", "engine.cli",
                                *_night_args(inputs, state_dir, out, "2020-07-31", config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    result = _kyufu(_night_args(inputs, state_dir, out, "2020-07-31", config))
    assert result.returncode == 0, result.stderr
    _assert_same_as_uninterrupted(tmp_path, reference)
