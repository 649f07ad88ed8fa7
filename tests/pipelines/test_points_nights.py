"""Mynapoint through the nightly run: several nights on a generated sample, refunds arriving on
later nights, checked event by event against the independent reference (tests/points_reference.py)."""

from __future__ import annotations

import csv
from datetime import date

import duckdb
import polars as pl
import pytest

from engine.config import RunConfig
from engine.state import Store
from pipelines import generate, nightly
from points_reference import PointsReference

NIGHTS = [date(2020, 10, 30), date(2020, 12, 31), date(2021, 6, 30), date(2021, 12, 31), date(2022, 1, 31)]
CFG = RunConfig()


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("campaign")
    inputs = root / "inputs"
    generate.generate(residents=20_000, seed=3, out=inputs)
    reports = [nightly.run(inputs, root / "state", root / "out", night, CFG) for night in NIGHTS[:1]]
    keys = Store(root / "state").head().table("persons")
    read = lambda name: pl.read_parquet(inputs / name / "*.parquet")  # noqa: E731
    deaths = read("residents").group_by("my_number").agg(pl.col("died_on").min())
    persons = keys.join(deaths, on="my_number", how="left")
    reference = PointsReference(CFG.mynapoint, pl.read_parquet(inputs / "services.parquet").to_dicts(),
                                read("wallets").to_dicts(), persons.to_dicts(), read("transactions").to_dicts())
    expected = [reference.night(NIGHTS[0])]
    for night in NIGHTS[1:]:
        reports.append(nightly.run(inputs, root / "state", root / "out", night, CFG))
        expected.append(reference.night(night))
    return root, reports, expected


def grants(report: nightly.RunReport) -> dict[int, int]:
    with duckdb.connect(str(report.run_dir / "analyst.duckdb"), read_only=True) as con:
        return dict(con.sql("SELECT transaction_id, points_delta_yen FROM points").fetchall())


def test_every_grant_and_clawback_matches_the_reference_to_the_yen(campaign) -> None:
    _, reports, expected = campaign
    clawbacks = 0
    for report, night in zip(reports, expected):
        assert grants(report) == night.changes, night.run_date
        clawbacks += sum(1 for v in night.changes.values() if v < 0)
    assert clawbacks > 0, "the sample has refunds arriving on later nights"


def test_no_person_is_ever_above_the_cap(campaign) -> None:
    root, _, _ = campaign
    for version in Store(root / "state").history():
        granted = version.table("points_persons")["granted_yen"]
        assert granted.is_empty() or granted.max() <= CFG.mynapoint.cap_per_person_yen


def test_provider_files_ledger_and_run_record_reconcile(campaign) -> None:
    _, reports, _ = campaign
    for report in reports:
        with duckdb.connect(str(report.run_dir / "analyst.duckdb"), read_only=True) as con:
            ledger = dict(con.sql(
                "SELECT account, sum(credit_yen) - sum(debit_yen) FROM ledger "
                f"WHERE run_date = DATE '{report.run_date}' AND account = 'points_payable' GROUP BY ALL").fetchall())
            settled = con.sql("SELECT sum(points_yen) FROM point_settlements").fetchall()[0][0] or 0
        files_total = 0
        for path in (report.run_dir / "settlement").rglob("*.csv"):
            rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
            assert rows[-1][0] == "total"
            assert int(rows[-1][2]) == sum(int(r[2]) for r in rows[1:-1])
            files_total += int(rows[-1][2])
        assert files_total == settled == ledger.get("points_payable", 0) == report.totals["points_net_yen"]


def test_planted_wallet_faults_are_held(campaign) -> None:
    root, reports, _ = campaign
    truth = pl.read_parquet(root / "inputs" / "truth")
    with duckdb.connect(str(reports[-1].run_dir / "analyst.duckdb"), read_only=True) as con:
        holds = con.sql("SELECT wallet_id, unnest(reasons) AS reason FROM point_holds").pl()
    for fault in ("second_wallet", "refund_cycling"):
        planted = set(truth.filter(pl.col("fault") == fault)["wallet_id"])
        held = set(holds.filter(pl.col("reason") == fault)["wallet_id"])
        assert planted and planted == held, fault
