"""Evaluate: precision and recall of every check of a night against the generator's ground truth.

A night's analyst tables (holds, rejects, persons, households) + the state folder (person keys)
+ the inputs' truth/faults → one row per check: truth cases, flagged cases, true positives,
precision, recall. Runs in the secure zone (it reads My Numbers from the truth and the state to
join them to surrogate keys) and prints only counts.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from engine import ingest, schemas, state
from engine.errors import InputError

# check name -> (truth fault kinds, how the engine flags it)
HOLD_CHECKS = {
    "double_registration": ("duplicate_registration",),
    "fuzzy_identity": ("fuzzy_duplicate_person", "coincidental_namesake"),
    "shared_account": ("shared_account",),
    "holder_name_mismatch": ("holder_name_mismatch",),
    "applicant_not_head": ("applicant_not_head",),
    "conflicting_applications": ("conflicting_applications",),
}
NOT_ELIGIBLE_CHECKS = {
    "born_after_basis": "born_after_basis",
    "died_before_basis": "died_before_basis",
    "not_registered_on_basis": "moved_out_before_basis",
}
EVALUATION = pl.Schema({
    "check": pl.String, "kind": pl.String, "truth": pl.Int64, "flagged": pl.Int64,
    "true_positives": pl.Int64, "precision": pl.Float64, "recall": pl.Float64,
})


def _score(check: str, kind: str, truth: set, flagged: set) -> dict:
    hits = len(truth & flagged)
    return {
        "check": check, "kind": kind, "truth": len(truth), "flagged": len(flagged), "true_positives": hits,
        "precision": hits / len(flagged) if flagged else (1.0 if not truth else 0.0),
        "recall": hits / len(truth) if truth else 1.0,
    }


def _arrived_wallet_faults(truth: pl.DataFrame, inputs_dir: Path, run_date: date,
                           min_refund_cycles: int) -> dict[str, set]:
    """Planted wallet faults a night can see: a second wallet once both wallets are registered,
    refund cycling once the wallet has refunded at least `min_refund_cycles` times."""
    wallets = ingest.scan(schemas.WALLETS, inputs_dir)
    transactions = ingest.scan(schemas.TRANSACTIONS, inputs_dir)
    if wallets is None or transactions is None:
        return {}
    registered = wallets[0].filter(pl.col("registered_on") <= run_date).select("wallet_id", "my_number").collect()
    second = truth.filter(pl.col("fault") == "second_wallet").select("wallet_id", "my_number")
    both = second.join(registered.group_by("my_number").len().filter(pl.col("len") > 1), on="my_number")
    cycling = truth.filter(pl.col("fault") == "refund_cycling").select("wallet_id")
    # a planted cycling wallet is visible once it has refunded at least the configured cycles
    refunds = (transactions[0].join(cycling.lazy(), on="wallet_id", how="semi")
               .filter((pl.col("kind") == "refund") & (pl.col("occurred_at").dt.date() <= run_date))
               .group_by("wallet_id").len().filter(pl.col("len") >= min_refund_cycles).collect())
    return {
        "second_wallet": set(both.join(registered, on="wallet_id", how="semi")["wallet_id"].to_list()),
        "refund_cycling": set(refunds["wallet_id"].to_list()),
    }


def paid_once(truth: pl.DataFrame, holds: pl.DataFrame, households: pl.DataFrame, payouts: pl.DataFrame) -> dict:
    """A household applying twice with one account is paid, once: flagged when its status is
    paid and it has one payout. A household a check rightly holds (a hold the truth expects for
    it, such as a namesake in another household) is not owed a payment tonight, so it is not a
    miss; a household held for no planted reason still is."""
    rightly_held = set()
    for check, kinds in HOLD_CHECKS.items():
        expected = truth.filter(pl.col("fault").is_in(kinds)).select("household_id")
        rightly_held |= set(holds.filter(pl.col("reason") == check).join(expected, on="household_id", how="semi")
                            ["household_id"].to_list())
    twice = set(truth.filter(pl.col("fault") == "duplicate_application_same_account")["household_id"]
                .drop_nulls().to_list()) - rightly_held
    among_twice = pl.col("household_id").is_in(pl.Series(sorted(twice), dtype=pl.Int64).implode())
    once = payouts.filter(among_twice).group_by("household_id").len().filter(pl.col("len") == 1)
    paid = households.filter((pl.col("status") == "paid") & among_twice).join(once, on="household_id", how="semi")
    return _score("paid_once", "paid", twice, set(paid["household_id"].to_list()))


def evaluation(run_dir: Path, state_dir: Path, inputs_dir: Path) -> pl.DataFrame:
    """Precision and recall per check (one row each), computed from the written outputs."""
    truth_path = inputs_dir / "truth"
    if not truth_path.exists():
        msg = f"no ground truth in {truth_path}\n\nHint: evaluate a night run on `kyufu generate` data."
        raise InputError(msg)
    database = run_dir / "analyst.duckdb"
    if not database.exists():
        msg = f"no analyst database in {run_dir}\n\nHint: pass the night's folder, OUT/<date>."
        raise InputError(msg)
    truth = pl.read_parquet(truth_path)
    run_date = date.fromisoformat(json.loads((run_dir / "run.json").read_text())["run_date"])
    keys = state.Store(state_dir).head().table("persons")
    with duckdb.connect(str(database), read_only=True) as con:
        holds = con.sql("SELECT household_id, unnest(hold_reasons) AS reason FROM holds").pl()
        rejects = con.sql("SELECT dataset, row_number, reason, household_id FROM rejects").pl()
        persons = con.sql("SELECT person_key, not_eligible_reason FROM persons "
                          "WHERE not_eligible_reason IS NOT NULL").pl()
        households = con.sql("SELECT household_id, status FROM households").pl()
        payouts = con.sql("SELECT household_id FROM payouts").pl()

    def truth_of(*kinds: str, column: str = "household_id") -> set:
        return set(truth.filter(pl.col("fault").is_in(kinds))[column].drop_nulls().to_list())

    rows = []
    for check, kinds in HOLD_CHECKS.items():
        flagged = set(holds.filter(pl.col("reason") == check)["household_id"].to_list())
        rows.append(_score(check, "hold", truth_of(*kinds), flagged))
    # rejects: residents by household, accounts by the owner's My Number (row → number from input)
    rejected_households = set(
        rejects.filter((pl.col("dataset") == "residents") & (pl.col("reason") == "my_number_check_digit"))
        ["household_id"].to_list()
    )
    rows.append(_score("my_number_check_digit", "reject", truth_of("invalid_my_number"), rejected_households))
    found = ingest.scan(schemas.ACCOUNTS, inputs_dir)
    accounts = found[0].select(ingest.ROW, "my_number").collect() if found else pl.DataFrame()
    bank_rows = rejects.filter((pl.col("dataset") == "accounts") & (pl.col("reason") == "bank_unknown"))
    flagged_owners = set(accounts.join(bank_rows, on=ingest.ROW)["my_number"].to_list()) if found else set()
    rows.append(_score("bank_unknown", "reject", truth_of("unknown_bank", column="my_number"), flagged_owners))
    # not eligible, by person
    for reason, kind in NOT_ELIGIBLE_CHECKS.items():
        flagged = set(persons.filter(pl.col("not_eligible_reason") == reason)["person_key"].to_list())
        planted = truth.filter(pl.col("fault") == kind).join(keys, on="my_number", how="inner")
        rows.append(_score(reason, "not_eligible", set(planted["person_key"].to_list()), flagged))
    # Mynapoint wallets
    with duckdb.connect(str(database), read_only=True) as con:
        tables = {n for (n,) in con.sql("SELECT table_name FROM information_schema.tables").fetchall()}
        wallet_holds = (con.sql("SELECT wallet_id, unnest(reasons) AS reason FROM point_holds").pl()
                        if "point_holds" in tables else None)
    if wallet_holds is not None:
        record = json.loads((run_dir / "run.json").read_text())
        cycles = record["config"]["mynapoint"]["min_refund_cycles"]
        for check, arrived in _arrived_wallet_faults(truth, inputs_dir, run_date, cycles).items():
            flagged = set(wallet_holds.filter(pl.col("reason") == check)["wallet_id"].to_list())
            rows.append(_score(check, "wallet hold", arrived, flagged))
    rows.append(paid_once(truth, holds, households, payouts))
    return pl.DataFrame(rows, schema=EVALUATION)
