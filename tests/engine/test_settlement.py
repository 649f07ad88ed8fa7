"""Settlement: provider files (bytes, order, totals, checksums), points ledger lines, and the
reconciliation of totals, files and ledger."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from engine import points, settlement, state
from engine.errors import ReconciliationError

RUN = date(2020, 12, 31)
SERVICES = pl.DataFrame({"service_id": [1, 2, 3], "name": ["A", "B", "C"], "kind": ["prepaid", "postpaid", "prepaid"]})


def grants(*rows) -> pl.DataFrame:
    """rows: (transaction_id, wallet_id, service_id, points_delta_yen)."""
    frame = pl.DataFrame(rows, orient="row", schema={"transaction_id": pl.Int64, "wallet_id": pl.Int64,
                                                     "service_id": pl.Int64, "points_delta_yen": pl.Int64})
    return frame.with_columns(
        person_key=pl.col("wallet_id"), occurred_at=pl.lit(datetime(2020, 12, 1)),
        kind=pl.lit("purchase"), amount_yen=pl.lit(1_000, dtype=pl.Int64), refund_of=pl.lit(None, dtype=pl.Int64),
        reason=pl.lit("earned"),
    ).select(points.GRANTS.schema.names())


GRANTS = grants((1, 20, 2, 2_500), (2, 20, 2, -1_000), (3, 7, 2, 300), (4, 11, 1, -500), (5, 12, 1, 400),
                (6, 12, 1, -400))


def test_one_file_per_service_sorted_by_wallet_with_a_total_line(tmp_path: Path) -> None:
    lines = settlement.settlement_lines(GRANTS)
    files = settlement.write_settlement_files(lines, SERVICES, tmp_path, RUN)
    assert [(f.service_id, f.records, f.total_yen) for f in files] == [(1, 1, -500), (2, 2, 1_800), (3, 0, 0)]
    assert files[1].path == tmp_path / "settlement" / "20201231" / "2.csv"
    assert files[1].path.read_bytes() == b"service_id,wallet_id,points_yen\n2,7,300\n2,20,1500\ntotal,2,1800\n"
    assert files[2].path.read_bytes() == b"service_id,wallet_id,points_yen\ntotal,0,0\n"
    for f in files:
        assert f.sha256 == hashlib.sha256(f.path.read_bytes()).hexdigest()


def test_files_are_byte_identical_on_a_rerun(tmp_path: Path) -> None:
    lines = settlement.settlement_lines(GRANTS)
    first = settlement.write_settlement_files(lines, SERVICES, tmp_path / "a", RUN)
    again = settlement.write_settlement_files(lines.sample(fraction=1.0, shuffle=True, seed=3), SERVICES,
                                              tmp_path / "b", RUN)
    assert [f.sha256 for f in first] == [f.sha256 for f in again]


def test_settlement_for_an_unregistered_service_is_refused(tmp_path: Path) -> None:
    lines = settlement.settlement_lines(grants((1, 5, 99, 100)))
    with pytest.raises(ReconciliationError, match=r"service_id\(s\) \[99\]"):
        settlement.write_settlement_files(lines, SERVICES, tmp_path, RUN)


def test_ledger_lines_have_the_benefit_ledger_columns_and_balance() -> None:
    entries = settlement.points_ledger_entries(GRANTS.lazy(), RUN).collect()
    assert entries.schema == state.SCHEMAS["ledger"]  # the benefit ledger's columns (ledger.ledger_lines)
    assert entries["debit_yen"].sum() == entries["credit_yen"].sum() == 3_200 + 1_900
    def lines(entry_id: str) -> list[tuple]:
        return entries.filter(pl.col("entry_id") == entry_id).select("account", "debit_yen", "credit_yen").rows()

    assert lines("P-2020-12-31-20-G") == [("points_expense", 2_500, 0), ("points_payable", 0, 2_500)]
    assert lines("P-2020-12-31-20-C") == [("points_expense", 0, 1_000), ("points_payable", 1_000, 0)]
    assert set(entries["reference"]) == {"settlement/20201231/1.csv", "settlement/20201231/2.csv"}
    assert entries["household_id"].null_count() == entries.height
    # in order of wallet, then entry (…-C before …-G), then account
    keys = entries.select("entry_id", "account").rows()
    assert keys == sorted(keys, key=lambda k: (int(k[0].split("-")[4]), k[0], k[1]))
    prefixed = settlement.points_ledger_entries(GRANTS.lazy(), RUN, reference_prefix="2020-12-31/").collect()
    assert prefixed["reference"].str.starts_with("2020-12-31/settlement/20201231/").all()


def test_reconciliation_passes_then_names_what_disagrees(tmp_path: Path) -> None:
    totals = settlement.point_totals(GRANTS)
    files = settlement.write_settlement_files(settlement.settlement_lines(GRANTS), SERVICES, tmp_path, RUN)
    entries = settlement.points_ledger_entries(GRANTS.lazy(), RUN)
    figures = settlement.points_reconciliation(totals, files, entries)
    assert figures["points_granted_yen"] == 3_200
    assert figures["points_clawed_back_yen"] == 1_900
    assert figures["points_net_yen"] == figures["points_files_yen"] == 1_300
    tampered = [files[0], dataclasses.replace(files[1], total_yen=1_799), files[2]]
    with pytest.raises(ReconciliationError, match=r"service 2 net ¥1,800 ≠ its file 2.csv ¥1,799"):
        settlement.points_reconciliation(totals, tampered, entries)
    one_sided = entries.filter((pl.col("entry_id") != "P-2020-12-31-7-G") | (pl.col("account") != "points_payable"))
    with pytest.raises(ReconciliationError, match=r"ledger debits ¥5,100 ≠ ledger credits ¥4,800(.|\n)*points_payable"):
        settlement.points_reconciliation(totals, files, one_sided)
