"""Standing: tonight's decision for every household, given what earlier nights did.

tonight's households (entitlement, account, holds) + the state's positions, payments, files and
decisions → each household's status (paid / held / awaiting / denied / not_payable), the
payments tonight (new ones, and unsent earlier ones re-issued in tonight's files), the new
positions (engine.ledger turns the change of positions into journal lines), files and holds.

Rules that make payment exactly-once (research §1.4 F1-F12):
- a household with a payment is never paid again on a normal night, whatever the channel; a
  correction run pays only the positive difference between entitlement and what was paid;
- a payment lives in one transfer file; a file produced and not marked sent is superseded by the
  next night, which re-issues its payments in its own files; a sent file is final.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from engine.state import SCHEMAS


def latest_decisions(decisions: pl.DataFrame) -> pl.DataFrame:
    """The decision in force for each hold: the latest by decided_on (then by record order)."""
    return (
        decisions.with_row_index("order")
        .sort("hold_id", "decided_on", "order")
        .group_by("hold_id", maintain_order=True)
        .agg(pl.col("decision").last(), pl.col("decided_by").last(), pl.col("decided_on").last())
    )


def hold_id() -> pl.Expr:
    """One hold per household for the benefit, stable across nights: HB-<household_id>."""
    return pl.format("HB-{}", pl.col("household_id")).alias("hold_id")


def standing(
    tonight: pl.DataFrame, positions: pl.DataFrame, decisions: pl.DataFrame, *, correction: bool
) -> pl.DataFrame:
    """Every household (tonight's and those known from earlier nights) with its status.

    `tonight` columns: household_id, municipality_code, entitled_yen, account_source, the account
    columns, hold_reasons. Adds: paid_before_yen, pay_tonight_yen, paid_yen, held_yen,
    awaiting_yen, denied_yen, status, hold_id, decision.
    """
    decided = latest_decisions(decisions).select("hold_id", "decision")
    before = positions.select(
        "household_id",
        pl.col("paid_yen").alias("paid_before_yen"),
        pl.col("denied_yen").alias("denied_before_yen"),
        pl.col("entitled_yen").alias("entitled_before_yen"),
    )
    merged = (
        tonight.join(before, on="household_id", how="full", coalesce=True)
        .with_columns(
            pl.col("entitled_yen").fill_null(0),
            pl.col("paid_before_yen").fill_null(0),
            pl.col("denied_before_yen").fill_null(0),
            pl.col("hold_reasons").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            pl.col("account_source").fill_null("none"),
            hold_id(),
        )
        .join(decided, on="hold_id", how="left")
    )
    owed = pl.col("entitled_yen") - pl.col("paid_before_yen")
    has_account = pl.col("account_source") != "none"
    is_held = (pl.col("hold_reasons").list.len() > 0) & (pl.col("decision") != "release").fill_null(True)
    paid_before = pl.col("paid_before_yen") > 0
    status = (
        pl.when(pl.col("denied_before_yen") > 0).then(pl.lit("denied"))
        .when(paid_before & ~pl.lit(correction)).then(pl.lit("paid"))
        .when(paid_before & (owed <= 0)).then(pl.lit("paid"))
        .when(pl.col("entitled_yen") == 0).then(pl.lit("not_payable"))
        .when(pl.col("decision") == "deny").then(pl.lit("denied"))
        .when(is_held).then(pl.lit("held"))
        .when(~has_account).then(pl.lit("awaiting"))
        .otherwise(pl.lit("paid"))
    )
    open_yen = pl.when(paid_before).then(owed).otherwise(pl.col("entitled_yen"))
    return (
        merged.with_columns(status=status)
        .with_columns(
            pl.when((pl.col("status") == "paid") & (open_yen > 0)).then(open_yen).otherwise(0)
            .cast(pl.Int64).alias("pay_tonight_yen"),
            pl.when(pl.col("status") == "held").then(open_yen).otherwise(0).cast(pl.Int64).alias("held_yen"),
            pl.when(pl.col("status") == "awaiting").then(open_yen).otherwise(0).cast(pl.Int64)
            .alias("awaiting_yen"),
            pl.when(pl.col("status") == "denied")
            .then(pl.max_horizontal("denied_before_yen", "entitled_yen")).otherwise(0).cast(pl.Int64)
            .alias("denied_yen"),
        )
        .with_columns((pl.col("paid_before_yen") + pl.col("pay_tonight_yen")).alias("paid_yen"))
        .with_columns(
            # what the household is recognised as owed: never less than what was paid
            (pl.col("paid_yen") + pl.col("held_yen") + pl.col("awaiting_yen") + pl.col("denied_yen"))
            .alias("recognised_yen")
        )
        .sort("household_id")
    )


def positions_after(households: pl.DataFrame, run_date: date) -> pl.DataFrame:
    """The positions table of the state after tonight."""
    return households.select(
        "household_id", "status", pl.col("recognised_yen").alias("entitled_yen"), "paid_yen", "denied_yen",
        updated_on=pl.lit(run_date),
    ).select(SCHEMAS["positions"].names())


def reissued_payments(payments: pl.DataFrame, files: pl.DataFrame) -> pl.DataFrame:
    """Earlier payments whose file was produced but never marked sent: tonight re-issues them."""
    unsent = files.filter(pl.col("status") == "produced").select("transfer_file")
    return payments.join(unsent, on="transfer_file", how="semi")


def files_after(files: pl.DataFrame, produced: pl.DataFrame, run_date: date) -> pl.DataFrame:
    """The files table after tonight: earlier unsent files superseded, tonight's added."""
    superseded = files.with_columns(
        pl.when(pl.col("status") == "produced").then(pl.lit("superseded")).otherwise(pl.col("status"))
        .alias("status"),
        pl.when(pl.col("status") == "produced").then(pl.lit(run_date)).otherwise(pl.col("superseded_by_run"))
        .alias("superseded_by_run"),
    )
    return pl.concat([superseded, produced.select(SCHEMAS["files"].names())], how="vertical_relaxed")


def mark_sent(files: pl.DataFrame, names: list[str], sent_on: date, sent_by: str) -> pl.DataFrame:
    """Files marked sent by an operator. Raises ValueError naming unknown, superseded or already
    sent files, all at once."""
    known = dict(files.select("transfer_file", "status").iter_rows())
    problems = []
    for name in names:
        status = known.get(name)
        if status is None:
            problems.append(f"  {name}: not a transfer file the engine produced")
        elif status == "superseded":
            problems.append(f"  {name}: superseded by a later night, which re-issued its payments; "
                            "do not send it")
        elif status == "sent":
            problems.append(f"  {name}: already marked sent")
    if problems:
        raise ValueError("\n".join(problems))
    chosen = pl.col("transfer_file").is_in(pl.Series(names, dtype=pl.String).implode())
    return files.with_columns(
        pl.when(chosen).then(pl.lit("sent")).otherwise(pl.col("status")).alias("status"),
        pl.when(chosen).then(pl.lit(sent_on)).otherwise(pl.col("sent_on")).alias("sent_on"),
        pl.when(chosen).then(pl.lit(sent_by)).otherwise(pl.col("sent_by")).alias("sent_by"),
    )


def holds_after(holds: pl.DataFrame, households: pl.DataFrame, run_date: date) -> pl.DataFrame:
    """The holds table after tonight: every hold ever opened, with its current status
    (open / released / denied / cleared when the checks no longer flag it)."""
    # a household paid on an earlier night is not held again (its alerts are in the checks' output)
    tonight = households.filter((pl.col("hold_reasons").list.len() > 0) & (pl.col("paid_before_yen") == 0)).select(
        "hold_id", "household_id", "municipality_code", "hold_reasons",
        pl.col("hold_evidence").alias("evidence"),
        pl.col("entitled_yen").alias("amount_yen"),
        pl.lit(run_date).alias("first_held_on"),
        pl.lit(run_date).alias("last_seen_on"),
        pl.when(pl.col("status") == "held").then(pl.lit("open"))
        .when(pl.col("decision") == "release").then(pl.lit("released"))
        .when(pl.col("status") == "denied").then(pl.lit("denied"))
        .otherwise(pl.lit("cleared")).alias("status"),
    )
    earlier = holds.join(tonight.select("hold_id"), on="hold_id", how="anti").with_columns(
        pl.when(pl.col("status") == "open").then(pl.lit("cleared")).otherwise(pl.col("status")).alias("status")
    )
    first_seen = holds.select("hold_id", pl.col("first_held_on").alias("earlier_first_held_on"))
    tonight = tonight.join(first_seen, on="hold_id", how="left").with_columns(
        pl.coalesce("earlier_first_held_on", "first_held_on").alias("first_held_on")
    ).drop("earlier_first_held_on")
    return pl.concat([earlier, tonight.select(SCHEMAS["holds"].names())], how="vertical_relaxed").sort("hold_id")


def point_holds_after(holds: pl.DataFrame, tonight: pl.DataFrame, in_force: pl.DataFrame,
                      decisions: pl.DataFrame, run_date: date) -> pl.DataFrame:
    """The wallet holds table after tonight (as holds_after, for Mynapoint wallets)."""
    decided = latest_decisions(decisions).select("hold_id", "decision")
    still = in_force.select("hold_id", is_in_force=pl.lit(True))
    now = (
        tonight.join(decided, on="hold_id", how="left").join(still, on="hold_id", how="left")
        .select(
            "hold_id", "wallet_id", "person_key", "service_id", "reasons", "evidence",
            pl.lit(run_date).alias("first_held_on"), pl.lit(run_date).alias("last_seen_on"),
            pl.when(pl.col("decision") == "deny").then(pl.lit("denied"))
            .when(pl.col("is_in_force").fill_null(False)).then(pl.lit("open"))
            .otherwise(pl.lit("released")).alias("status"),
        )
    )
    earlier = holds.join(now.select("hold_id"), on="hold_id", how="anti").with_columns(
        pl.when(pl.col("status") == "open").then(pl.lit("cleared")).otherwise(pl.col("status")).alias("status")
    )
    first_seen = holds.select("hold_id", pl.col("first_held_on").alias("earlier"))
    now = now.join(first_seen, on="hold_id", how="left").with_columns(
        pl.coalesce("earlier", "first_held_on").alias("first_held_on")).drop("earlier")
    return pl.concat([earlier, now.select(SCHEMAS["point_holds"].names())], how="vertical_relaxed").sort("hold_id")
