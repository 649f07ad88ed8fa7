"""Ledger: the double-entry journal, and the reconciliation that must hold before anything is
published.

old positions → new positions → ledger_lines: each household's balances (debit
`benefit_expense` = what it is recognised as owed; credit `bank_transfers` = paid,
`held_payable`, `awaiting_payable`, `benefit_denied`) balance by construction, so the lines that
move a household from its old balances to its new ones balance too.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from engine.errors import ReconciliationError
from engine.state import SCHEMAS

EXPENSE = "benefit_expense"
CREDIT_ACCOUNTS = ("bank_transfers", "held_payable", "awaiting_payable", "benefit_denied")


def balances(frame: pl.DataFrame, prefix: str = "") -> pl.DataFrame:
    """Each household's balance in every account, from its position."""
    return frame.select(
        "household_id",
        pl.col("entitled_yen").alias(f"{prefix}{EXPENSE}"),
        pl.col("paid_yen").alias(f"{prefix}bank_transfers"),
        pl.when(pl.col("status") == "held").then(pl.col("entitled_yen") - pl.col("paid_yen")).otherwise(0)
        .alias(f"{prefix}held_payable"),
        pl.when(pl.col("status") == "awaiting").then(pl.col("entitled_yen") - pl.col("paid_yen")).otherwise(0)
        .alias(f"{prefix}awaiting_payable"),
        pl.col("denied_yen").alias(f"{prefix}benefit_denied"),
    )


def ledger_lines(old_positions: pl.DataFrame, new_positions: pl.DataFrame, run_date: date,
                 references: pl.DataFrame) -> pl.DataFrame:
    """Journal lines that move each household's balances from the old positions to the new.

    Each household's balances (debit `benefit_expense` = what it is recognised as owed; credit
    `bank_transfers` paid, `held_payable`, `awaiting_payable`, `benefit_denied`) balance by
    construction, so the differences balance too: every entry's debits equal its credits.
    """
    old = balances(old_positions, "old_")
    new = balances(new_positions, "new_")
    both = new.join(old, on="household_id", how="full", coalesce=True).fill_null(0).join(
        references, on="household_id", how="left")
    # each account's lines, the accounts in name order, then one stable sort by household: the
    # lines in (household_id, account) order without sorting on the account's name
    lines = pl.concat([
        both.select("household_id", pl.lit(account).alias("account"),
                    (pl.col(f"new_{account}") - pl.col(f"old_{account}")).alias("delta"), "reference")
        .filter(pl.col("delta") != 0)
        for account in sorted([EXPENSE, *CREDIT_ACCOUNTS])
    ]).sort("household_id", maintain_order=True)
    is_debit_side = pl.col("account") == EXPENSE
    return lines.select(
        pl.lit(run_date).alias("run_date"),
        pl.format("B-{}-{}", pl.lit(run_date.isoformat()), "household_id").alias("entry_id"),
        "household_id",
        "account",
        pl.when(is_debit_side == (pl.col("delta") > 0)).then(pl.col("delta").abs()).otherwise(0)
        .cast(pl.Int64).alias("debit_yen"),
        pl.when(is_debit_side != (pl.col("delta") > 0)).then(pl.col("delta").abs()).otherwise(0)
        .cast(pl.Int64).alias("credit_yen"),
        pl.col("reference").fill_null(""),
    ).select(SCHEMAS["ledger"].names())



def check_balanced(figures: dict[str, int]) -> None:
    """Raise ReconciliationError naming every pair of figures that disagree, to the yen: the
    night's lines balance, the whole ledger balances, and it agrees with the households'
    standing and with the transfer files (tonight's and every file still live)."""
    f = figures
    pairs = [
        ("ledger debits tonight", f["ledger_debit_tonight_yen"], "ledger credits tonight",
         f["ledger_credit_tonight_yen"]),
        ("ledger debits", f["ledger_debit_yen"], "ledger credits", f["ledger_credit_yen"]),
        ("entitled", f["entitled_yen"], "paid + held + awaiting + denied",
         f["paid_yen"] + f["held_yen"] + f["awaiting_yen"] + f["denied_yen"]),
        ("entitled", f["entitled_yen"], "ledger benefit_expense", f["ledger_expense_yen"]),
        ("paid", f["paid_yen"], "ledger bank_transfers", f["ledger_bank_transfers_yen"]),
        ("held", f["held_yen"], "ledger held_payable", f["ledger_held_payable_yen"]),
        ("awaiting", f["awaiting_yen"], "ledger awaiting_payable", f["ledger_awaiting_payable_yen"]),
        ("denied", f["denied_yen"], "ledger benefit_denied", f["ledger_denied_yen"]),
        ("paid tonight", f["paid_tonight_yen"], "ledger bank_transfers tonight",
         f["ledger_bank_transfers_tonight_yen"]),
        ("entitled tonight (change)", f["entitled_tonight_yen"],
         "paid + held + awaiting + denied tonight (changes)",
         f["paid_tonight_yen"] + f["held_tonight_yen"] + f["awaiting_tonight_yen"] + f["denied_tonight_yen"]),
        ("entitled tonight (change)", f["entitled_tonight_yen"], "ledger benefit_expense tonight",
         f["ledger_expense_tonight_yen"]),
        ("held tonight (change)", f["held_tonight_yen"], "ledger held_payable tonight",
         f["ledger_held_payable_tonight_yen"]),
        ("awaiting tonight (change)", f["awaiting_tonight_yen"], "ledger awaiting_payable tonight",
         f["ledger_awaiting_payable_tonight_yen"]),
        ("denied tonight (change)", f["denied_tonight_yen"], "ledger benefit_denied tonight",
         f["ledger_denied_tonight_yen"]),
        ("paid tonight + re-issued", f["paid_tonight_yen"] + f["reissued_yen"],
         "tonight's transfer files (trailer totals)", f["transfer_files_yen"]),
        ("paid", f["paid_yen"], "transfer files not superseded", f["live_transfer_files_yen"]),
    ]
    wrong = [f"  {a} ¥{x:,} ≠ {b} ¥{y:,}" for a, x, b, y in pairs if x != y]
    if wrong:
        msg = "reconciliation failed; nothing was published\n" + "\n".join(wrong)
        msg += "\n\nHint: this is a bug in the engine, not in the input; keep the run's log."
        raise ReconciliationError(msg)
