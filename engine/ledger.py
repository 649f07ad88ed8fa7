"""Ledger: a double-entry journal of the night, and the reconciliation that must hold before
anything is published.

household outcomes → ledger_entries: for every household owed something, one journal entry of
two lines: debit `benefit_expense`, credit the account of its outcome (`bank_transfers` when
paid through a Zengin file, `held_payable`, `awaiting_payable`).
"""

from __future__ import annotations

from datetime import date

import polars as pl

from engine.errors import ReconciliationError

CREDIT_ACCOUNT = {"paid": "bank_transfers", "held": "held_payable", "awaiting": "awaiting_payable"}
EXPENSE = "benefit_expense"


def ledger_entries(outcomes: pl.LazyFrame, run_date: date) -> pl.LazyFrame:
    """Two lines per household with entitled_yen > 0; debits equal credits by construction,
    and `check_balanced` proves it on the written data."""
    owed = outcomes.filter(pl.col("entitled_yen") > 0).select(
        "household_id",
        "entitled_yen",
        pl.col("status").replace_strict(CREDIT_ACCOUNT, return_dtype=pl.String).alias("credit_account"),
        pl.coalesce("transfer_file", "hold_id", pl.lit("")).alias("reference"),
        pl.format("B-{}-{}", pl.lit(run_date.isoformat()), pl.col("household_id")).alias("entry_id"),
    )
    debit = owed.select(
        "entry_id", "household_id", pl.lit(EXPENSE).alias("account"),
        pl.col("entitled_yen").alias("debit_yen"), pl.lit(0, pl.Int64).alias("credit_yen"), "reference",
    )
    credit = owed.select(
        "entry_id", "household_id", pl.col("credit_account").alias("account"),
        pl.lit(0, pl.Int64).alias("debit_yen"), pl.col("entitled_yen").alias("credit_yen"), "reference",
    )
    return (
        pl.concat([debit, credit])
        .with_columns(run_date=pl.lit(run_date))
        .select("run_date", "entry_id", "household_id", "account", "debit_yen", "credit_yen", "reference")
        .sort("household_id", "account")
    )


def ledger_totals(ledger: pl.LazyFrame) -> dict[str, int]:
    """Debit and credit totals, and the credit of each outcome account, in yen."""
    by_account = (
        ledger.group_by("account")
        .agg(pl.col("debit_yen").sum(), pl.col("credit_yen").sum())
        .collect()
    )
    totals = {
        "debit_yen": int(by_account["debit_yen"].sum()),
        "credit_yen": int(by_account["credit_yen"].sum()),
    }
    for account, _debit, credit in by_account.sort("account").iter_rows():
        totals[f"{account}_yen"] = int(credit) if account != EXPENSE else int(_debit)
    return totals


def check_balanced(figures: dict[str, int]) -> None:
    """Raise ReconciliationError naming every pair of figures that disagree.

    `figures` must hold: ledger debit_yen and credit_yen, entitled_yen, paid_yen, held_yen,
    awaiting_yen (from the outcomes), ledger_bank_transfers_yen, ledger_held_payable_yen,
    ledger_awaiting_payable_yen, transfer_files_yen (trailer sums of the written files).
    """
    pairs = [
        ("ledger debits", figures["debit_yen"], "ledger credits", figures["credit_yen"]),
        ("entitled", figures["entitled_yen"], "paid + held + awaiting",
         figures["paid_yen"] + figures["held_yen"] + figures["awaiting_yen"]),
        ("ledger debits", figures["debit_yen"], "entitled", figures["entitled_yen"]),
        ("paid", figures["paid_yen"], "ledger bank_transfers", figures["ledger_bank_transfers_yen"]),
        ("paid", figures["paid_yen"], "transfer files (trailer totals)", figures["transfer_files_yen"]),
        ("held", figures["held_yen"], "ledger held_payable", figures["ledger_held_payable_yen"]),
        ("awaiting", figures["awaiting_yen"], "ledger awaiting_payable",
         figures["ledger_awaiting_payable_yen"]),
    ]
    wrong = [f"  {a} ¥{x:,} ≠ {b} ¥{y:,}" for a, x, b, y in pairs if x != y]
    if wrong:
        msg = "reconciliation failed; nothing was published\n" + "\n".join(wrong)
        msg += "\n\nHint: this is a bug in the engine, not in the input; keep the run's log."
        raise ReconciliationError(msg)
