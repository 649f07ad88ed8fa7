"""The nightly run end to end on the hand-written night of tests/tiny.py: one household per rule."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import duckdb
import polars as pl
import pytest

import tiny
import zengin_validator
from engine import ingest
from engine.config import RunConfig, ValidateConfig
from engine.state import Store
from pipelines import nightly

CFG = RunConfig(validate=ValidateConfig(max_reject_ratio=0.5))


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> nightly.RunReport:
    root = tmp_path_factory.mktemp("tiny")
    inputs = tiny.write_tiny(root / "inputs")
    return nightly.run(inputs, root / "state", root / "out", tiny.RUN_DATE, CFG)


def table(report: nightly.RunReport, name: str) -> pl.DataFrame:
    with duckdb.connect(str(report.run_dir / "analyst.duckdb"), read_only=True) as con:
        return con.sql(f"select * from {name}").pl()


def test_every_household_gets_its_rule_outcome(night: nightly.RunReport) -> None:
    households = table(night, "households").sort("household_id")
    got = {h: (s, y) for h, s, y in households.select("household_id", "status", "entitled_yen").iter_rows()}
    assert got == tiny.EXPECTED


def test_holds_name_their_reasons_and_evidence(night: nightly.RunReport) -> None:
    holds = table(night, "holds").sort("household_id")
    got = {h: sorted(r) for h, r in holds.select("household_id", "hold_reasons").iter_rows()}
    assert got == tiny.EXPECTED_HOLDS
    assert holds["evidence"].null_count() == 0
    assert holds.filter(pl.col("household_id") == 9)["evidence"][0].startswith("shared_account: account 0005-001-1-1000014")


def test_rejects_carry_a_reason(night: nightly.RunReport) -> None:
    rejects = table(night, "rejects").sort("dataset", "row_number")
    assert rejects.select("dataset", "reason").rows() == [
        ("accounts", "bank_unknown"),
        ("residents", "my_number_check_digit"),
    ]


def test_transfer_files_pass_the_independent_validator_and_reconcile(night: nightly.RunReport) -> None:
    record = json.loads((night.run_dir / "run.json").read_text())
    files = record["outputs"]["transfer_files"]
    assert len(files) == 2
    total = 0
    for f in files:
        result = zengin_validator.validate_transfer_file((night.run_dir / f["path"]).read_bytes())
        assert result.ok, result.errors
        assert result.transfer_dates == ["0701"]
        assert result.total_yen == f["total_yen"]
        total += result.total_yen
    payouts = table(night, "payouts")
    ledger = table(night, "ledger")
    assert total == payouts["amount_yen"].sum() == record["totals_yen"]["paid_yen"] == 1_000_000
    assert ledger["debit_yen"].sum() == ledger["credit_yen"].sum() == record["totals_yen"]["entitled_yen"]
    assert record["totals_yen"]["ledger_debit_yen"] == ledger["debit_yen"].sum()
    assert ledger.filter(pl.col("account") == "bank_transfers")["credit_yen"].sum() == total


def test_payee_name_in_the_file_is_the_holder_name_in_zengin_kana(night: nightly.RunReport) -> None:
    payouts = table(night, "payouts").sort("household_id")
    assert payouts.filter(pl.col("household_id") == 4)["payee_name_kana"][0] == "ｻﾄｳ ｹﾝｼﾞ"
    assert payouts.filter(pl.col("household_id") == 1)["payee_name_kana"][0] == "ﾔﾏﾀﾞ ﾀﾛｳ"


def test_no_my_number_anywhere_in_the_outputs(night: nightly.RunReport) -> None:
    numbers = {str(tiny.my_number(n)) for n in range(1, 30)} | {str(tiny.bad_my_number(26))}
    with duckdb.connect(str(night.run_dir / "analyst.duckdb"), read_only=True) as con:
        for (name,) in con.sql("select table_name from information_schema.tables").fetchall():
            text = str(con.sql(f"select * from {name}").fetchall())
            assert not any(n in text for n in numbers), name
    for path in night.run_dir.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".txt"):
            text = path.read_bytes().decode("cp932" if path.suffix == ".txt" else "utf-8")
            assert not any(n in text for n in numbers), path


def test_persons_are_keyed_by_a_stable_surrogate(night: nightly.RunReport, tmp_path: Path) -> None:
    persons = table(night, "persons")
    assert persons["person_key"].min() == 1
    assert "my_number" not in persons.columns
    keys = Store(night.run_dir.parent.parent / "state").head().table("persons")
    assert keys.height == persons["person_key"].n_unique()


@pytest.mark.parametrize("shards", [None, 2])
def test_a_new_night_runs_while_its_inputs_are_hashed_and_records_their_checksums(
        tmp_path: Path, monkeypatch, shards: int | None) -> None:
    inputs = tiny.write_tiny(tmp_path / "inputs")
    standing = threading.Event()
    hashed_after = []
    real_checksum = ingest._checksum

    def late_checksum(path: Path, stopped=None) -> dict:  # held back until the standing stage starts
        hashed_after.append(standing.wait(timeout=60))
        return real_checksum(path, stopped)

    monkeypatch.setattr(ingest, "_checksum", late_checksum)

    def on_stage(name: str) -> None:
        if name == "standing":
            standing.set()

    report = nightly.run(inputs, tmp_path / "state", tmp_path / "out", tiny.RUN_DATE, CFG, on_stage=on_stage,
                         shards=shards)
    assert hashed_after and all(hashed_after), "the night waited for its inputs' checksums before it ran"
    record = json.loads((report.run_dir / "run.json").read_text())
    files = {(name, f["path"]): f["sha256"] for name, entry in record["inputs"].items() for f in entry["files"]}
    expected = {(name, path.relative_to(inputs).as_posix() if path.parent != inputs else path.name):
                hashlib.sha256(path.read_bytes()).hexdigest()
                for name in record["inputs"] for path in sorted(inputs.glob(f"{name}*"))
                if path.is_file()}
    assert files == expected
    runs = Store(tmp_path / "state").head().table("runs")
    assert runs["fingerprint"].to_list() == [record["fingerprint"]] == [report.fingerprint]
    if shards:  # the analyst tables' digests, hashed as each shard wrote its parts, are the published files'
        tables = record["outputs"]["analyst_database"]["tables"]
        for name, entry in tables.items():
            parts = sorted((report.run_dir / "analyst" / name).glob("part-*.parquet"))
            digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in parts]
            # a table placed in parts (even one): the SHA-256 of its parts' digests in order
            assert entry["sha256"] == hashlib.sha256("".join(digests).encode()).hexdigest(), name
        assert len(tables) == len(list((report.run_dir / "analyst").iterdir())) >= 10
    # the same inputs again: a re-run, told apart by the checksums (read before it starts)
    again = nightly.run(inputs, tmp_path / "state", tmp_path / "out", tiny.RUN_DATE, CFG, shards=shards)
    assert again.mode == "rerun"
