"""Points: Mynapoint grants and clawbacks of one night under each person's cumulative cap.

transactions + wallets + services + persons + holds + state (earlier nights) → PointsNight:
`grants` (one row per event tonight: +grant / −clawback), `ignored` (with reasons), the updated
`state`, the per-wallet `settlement` owed to each provider, and per-service `totals`.

Rules: SPEC.md "Mynapoint" (research §2.2); the cap arithmetic is kernels.capped_point_changes.

State (Parquet-friendly, the pipeline keeps it in its state folder; `state_dir/<name>.parquet`):
  points_transactions: one row per earning transaction processed (granted, possibly 0):
      transaction_id, wallet_id, person_key, service_id, occurred_at, amount_yen,
      net_amount_yen (amount − refunds applied), points_first_yen (granted when processed),
      points_current_yen (after refunds), processed_on (the night), updated_on (last change)
  points_refunds: one row per refund applied: transaction_id, refund_of, amount_yen,
      occurred_at, clawed_back_yen, applied_on
  points_persons: person_key, granted_yen (the person's points net of clawbacks, ≤ the cap)
A transaction in points_transactions is never granted again, a refund in points_refunds never
applied again; so a re-run of a night, with the state before it or after it, grants nothing twice.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import NamedTuple

import numpy as np
import polars as pl

from engine import kernels, settlement
from engine.config import MynapointConfig
from engine.schemas import Contract

EARNING_KINDS = ("charge", "purchase")
KINDS = (*EARNING_KINDS, "refund")
EARNS_ON = {"prepaid": "charge", "postpaid": "purchase"}  # services.kind → the kind that earns

# reject reasons of transactions; the first five are in schemas.REJECT_REASONS, the last two are
# proposed for it (a lead's change: schemas.py is shared)
TRANSACTION_REJECT_REASONS = {
    "missing_value": "a required column is null (or a refund without refund_of)",
    "duplicate_key": "the transaction_id appears on an earlier row",
    "invalid_value": "kind is not charge/purchase/refund, or a charge/purchase has refund_of",
    "amount_not_positive": "amount_yen is zero or negative",
    "unknown_wallet": "wallet_id is not in the wallets dataset",
    "unknown_refunded_transaction": "refund_of is not a valid charge or purchase of the same wallet",
    "impossible_date": "the refund occurs before the transaction it refunds",
    "refund_exceeds_amount": "the refunds of a transaction, up to this one, total more than its amount",
}
# a valid transaction that earns nothing (never an error); checked in this order
IGNORE_REASONS = {
    "outside_window": "occurred outside the points window",
    "before_registration": "occurred before the wallet's registration date",
    "not_earning_kind": "not the kind the service rewards (prepaid: charge, postpaid: purchase)",
    "unknown_person": "the wallet's My Number is not on the register",
    "after_death": "occurred after the person's death",
    "held_wallet": "the wallet is held for review (granted on a later night once released)",
}
# the reason of each row of `grants`
GRANT_REASONS = {
    "earned": "granted in full: floor(rate × amount / 100)",
    "capped": "granted less than in full (possibly 0): the person's cap was reached",
    "clawback": "a refund lowered the transaction's points; the difference is clawed back",
    "refund_kept": "a refund that claws nothing back (points still within min(rate × net, first))",
}
HOLD_REASONS = {
    "shared_wallet": "one wallet_id is linked by more than one My Number",
    "second_wallet": "the person links more than one wallet (all the person's wallets are held)",
    "refund_cycling": "charge→refund→charge cycles on the wallet (research §2.5, SII 不当取引)",
}
# refund cycling: a planted cycling wallet has 3–5 cycles of ¥20,000 (engine/synth/points.py);
# an ordinary wallet has at most one refunded transaction, so 3 separates them with a margin
DEFAULT_MIN_REFUND_CYCLES = 3
DEFAULT_MIN_REFUNDED_PERCENT = 50  # a transaction refunded at least this much counts as a cycle

TIMESTAMP = pl.Datetime("us")
POINTS_TRANSACTIONS = Contract("points_transactions", pl.Schema({
    "transaction_id": pl.Int64, "wallet_id": pl.Int64, "person_key": pl.Int64, "service_id": pl.Int64,
    "occurred_at": TIMESTAMP, "amount_yen": pl.Int64, "net_amount_yen": pl.Int64,
    "points_first_yen": pl.Int64, "points_current_yen": pl.Int64, "processed_on": pl.Date,
    "updated_on": pl.Date,
}))
POINTS_REFUNDS = Contract("points_refunds", pl.Schema({
    "transaction_id": pl.Int64, "refund_of": pl.Int64, "amount_yen": pl.Int64, "occurred_at": TIMESTAMP,
    "clawed_back_yen": pl.Int64, "applied_on": pl.Date,
}))
POINTS_PERSONS = Contract("points_persons", pl.Schema({"person_key": pl.Int64, "granted_yen": pl.Int64}))
GRANTS = Contract("points", pl.Schema({
    "transaction_id": pl.Int64, "wallet_id": pl.Int64, "person_key": pl.Int64, "service_id": pl.Int64,
    "occurred_at": TIMESTAMP, "kind": pl.String, "amount_yen": pl.Int64, "refund_of": pl.Int64,
    "points_delta_yen": pl.Int64, "reason": pl.String,
}))
IGNORED = Contract("points_ignored", pl.Schema({
    "transaction_id": pl.Int64, "wallet_id": pl.Int64, "person_key": pl.Int64, "service_id": pl.Int64,
    "occurred_at": TIMESTAMP, "kind": pl.String, "amount_yen": pl.Int64, "reason": pl.String,
}))
WALLET_HOLDS = Contract("point_holds", pl.Schema({
    "hold_id": pl.String, "wallet_id": pl.Int64, "person_key": pl.Int64, "service_id": pl.Int64,
    "reasons": pl.List(pl.String), "evidence": pl.String,
}))


class PointsState(NamedTuple):
    """The points state after a night (see the module docstring); lazy, so the pipeline can
    scan it from the state folder and sink the next one without holding it in memory."""

    transactions: pl.LazyFrame
    refunds: pl.LazyFrame
    persons: pl.LazyFrame


class PointsNight(NamedTuple):
    grants: pl.DataFrame  # GRANTS: one row per grant or refund event processed tonight
    ignored: pl.DataFrame  # IGNORED: every transaction as of the night that earns nothing (yet)
    state: PointsState  # the state to persist for the next night
    settlement: pl.DataFrame  # settlement.SETTLEMENT: per service and wallet, points_yen ≠ 0
    totals: pl.DataFrame  # settlement.TOTALS: per service with a change tonight


def empty_points_state() -> PointsState:
    """The state before the first night."""
    return PointsState(*(c.schema.to_frame().lazy() for c in (POINTS_TRANSACTIONS, POINTS_REFUNDS, POINTS_PERSONS)))


def _end_of(day: date) -> datetime:
    """The first instant after `day` (a naive timestamp, as occurred_at)."""
    return datetime.combine(day + timedelta(days=1), time())


# ---- validation ------------------------------------------------------------------------------


def checked_transactions(transactions: pl.LazyFrame, wallets: pl.LazyFrame, run_date: date) -> pl.LazyFrame:
    """Transactions with `reject_reason` (TRANSACTION_REJECT_REASONS, null when valid), `detail`
    (the offending values; transactions carry no My Number) and `is_pending` (occurred after
    the run date). Rows keep their order; the first row of a duplicated transaction_id is kept.

    A refund is checked against the valid charge or purchase it names: same wallet, not earlier
    (by occurred_at, then transaction_id), and the refunds of that transaction, in order of
    occurrence up to and including this one, total at most its amount.

    Collects the wallet ids and the rows a refund check reads (refunds and the transactions
    they name: a few % of the rows) while planning; the plan returned is then one streaming
    pass over the transactions with no join (joins that keep the row order cost 3 s per 10M).
    """
    wallet_ids = wallets.lazy().select(pl.col("wallet_id").unique()).collect().to_series()
    indexed = transactions.with_row_index("__row")
    refunds = _refund_reasons(indexed, wallet_ids).collect()
    refund_detail = _refund_detail().alias("__refund_detail")
    lookup = refunds.filter(pl.col("__refund_reason").is_not_null()).with_columns(refund_detail)
    rows = lookup["__row"]
    checked = _with_basic_reason(indexed, wallet_ids).with_columns(
        pl.coalesce(
            "reject_reason",
            pl.col("__row").replace_strict(rows, lookup["__refund_reason"], default=None, return_dtype=pl.String),
        ).alias("reject_reason"),
        (pl.col("occurred_at") >= _end_of(run_date)).fill_null(False).alias("is_pending"),
    )
    return checked.with_columns(
        pl.coalesce(
            _basic_detail(),
            pl.col("__row").replace_strict(rows, lookup["__refund_detail"], default=None, return_dtype=pl.String),
        ).alias("detail")
    ).drop("__row")


def _with_basic_reason(indexed: pl.LazyFrame, wallet_ids: pl.Series) -> pl.LazyFrame:
    """`reject_reason` by the rules that read one row (and the wallet ids, and the earlier rows
    of the same transaction_id)."""
    required = ("transaction_id", "wallet_id", "occurred_at", "kind", "amount_yen")
    is_refund = pl.col("kind") == "refund"
    rules = {
        "missing_value": pl.any_horizontal(pl.col(c).is_null() for c in required)
        | (is_refund & pl.col("refund_of").is_null()),
        "duplicate_key": ~pl.col("transaction_id").is_first_distinct(),
        "invalid_value": ~pl.col("kind").is_in(KINDS) | (~is_refund & pl.col("refund_of").is_not_null()),
        "amount_not_positive": pl.col("amount_yen") <= 0,
        "unknown_wallet": ~pl.col("wallet_id").is_in(wallet_ids.implode()),
    }
    return indexed.with_columns(_first_reason(rules))


def _refund_reasons(indexed: pl.LazyFrame, wallet_ids: pl.Series) -> pl.LazyFrame:
    """The refund rules' reason for every refund that passes the basic rules (`__refund_reason`,
    null when valid), with the values its detail quotes."""
    # refunds and the transactions they name, with every row sharing their ids (so that
    # duplicate_key is decided among them alone)
    refund_ids = indexed.filter(pl.col("kind") == "refund").select(
        pl.concat_list("transaction_id", "refund_of").explode().drop_nulls().unique().alias("transaction_id")
    )
    involved = _with_basic_reason(
        indexed.join(refund_ids, on="transaction_id", how="semi").sort("__row"), wallet_ids
    ).filter(pl.col("reject_reason").is_null())
    originals = involved.filter(pl.col("kind").is_in(EARNING_KINDS)).select(
        pl.col("transaction_id").alias("refund_of"),
        pl.col("wallet_id").alias("__original_wallet"),
        pl.col("occurred_at").alias("__original_at"),
        pl.col("amount_yen").alias("__original_amount"),
    )
    unknown = pl.col("__original_wallet").is_null() | (pl.col("__original_wallet") != pl.col("wallet_id"))
    too_early = (pl.col("occurred_at") < pl.col("__original_at")) | (
        (pl.col("occurred_at") == pl.col("__original_at")) & (pl.col("transaction_id") < pl.col("refund_of"))
    )
    return (
        involved.filter(pl.col("kind") == "refund")
        .join(originals, on="refund_of", how="left")
        .with_columns(
            pl.when(unknown).then(pl.lit("unknown_refunded_transaction"))
            .when(too_early).then(pl.lit("impossible_date"))
            .alias("__refund_reason")
        )
        .with_columns(
            pl.when(pl.col("__refund_reason").is_null())
            .then(pl.col("amount_yen"))
            .otherwise(0)
            .cum_sum()
            .over("refund_of", order_by=["occurred_at", "transaction_id"])
            .alias("__refunded_so_far")
        )
        .with_columns(
            pl.when(pl.col("__refund_reason").is_not_null()).then(pl.col("__refund_reason"))
            .when(pl.col("__refunded_so_far") > pl.col("__original_amount"))
            .then(pl.lit("refund_exceeds_amount"))
            .alias("__refund_reason"),
        )
    )


def _first_reason(rules: dict[str, pl.Expr]) -> pl.Expr:
    return pl.coalesce(
        [pl.when(broken.fill_null(False)).then(pl.lit(name)) for name, broken in rules.items()]
    ).alias("reject_reason")


def _basic_detail() -> pl.Expr:
    """The offending values of a row rejected by a basic rule (ids, kinds, amounts; never a My
    Number); null otherwise."""
    reason = pl.col("reject_reason")
    nulls = pl.concat_str(
        [pl.when(pl.col(c).is_null()).then(pl.lit(c))
         for c in ("transaction_id", "wallet_id", "occurred_at", "kind", "amount_yen")],
        separator=", ", ignore_nulls=True,
    )
    return (
        pl.when(reason == "missing_value")
        .then(pl.when(nulls != "").then(pl.format("null in {}", nulls)).otherwise(pl.lit("refund without refund_of")))
        .when(reason == "duplicate_key").then(pl.format("transaction_id {} seen on an earlier row", "transaction_id"))
        .when(reason == "invalid_value").then(
            pl.format("kind {}, refund_of {}", pl.col("kind").fill_null("null"),
                      pl.col("refund_of").cast(pl.String).fill_null("null")))
        .when(reason == "amount_not_positive").then(pl.format("amount_yen {}", "amount_yen"))
        .when(reason == "unknown_wallet").then(pl.format("wallet_id {}", "wallet_id"))
    )


def _refund_detail() -> pl.Expr:
    """The values a refund rule's reject quotes."""
    reason = pl.col("__refund_reason")
    return (
        pl.when(reason == "unknown_refunded_transaction").then(
            pl.format("refund_of {} (wallet_id {})", "refund_of", "wallet_id"))
        .when(reason == "impossible_date").then(
            pl.format("refund at {} before transaction {} at {}", "occurred_at", "refund_of", "__original_at"))
        .when(reason == "refund_exceeds_amount").then(
            pl.format("refunds of transaction {} reach ¥{} of its ¥{}", "refund_of", "__refunded_so_far",
                      "__original_amount"))
    )


# ---- wallet owners and holds -------------------------------------------------------------------


def _persons_by_my_number(persons: pl.LazyFrame) -> pl.LazyFrame:
    """One row per My Number: its person_key and its earliest known death."""
    return persons.group_by("my_number").agg(pl.col("person_key").min(), pl.col("died_on").min())


def wallet_owners(wallets: pl.LazyFrame, persons: pl.LazyFrame) -> pl.LazyFrame:
    """One row per wallet_id: the owner (the earliest registration; a shared wallet is held
    anyway), with person_key (null when the My Number is not on the register) and died_on."""
    return (
        wallets.join(_persons_by_my_number(persons), on="my_number", how="left")
        .sort("wallet_id", "registered_on", "person_key", nulls_last=True)
        .group_by("wallet_id", maintain_order=True)
        .first()
        .select("wallet_id", "person_key", "service_id", "registered_on", "died_on")
    )


def wallet_holds(
    wallets: pl.LazyFrame,
    transactions: pl.LazyFrame,
    persons: pl.LazyFrame,
    run_date: date,
    *,
    min_refund_cycles: int = DEFAULT_MIN_REFUND_CYCLES,
    min_refunded_percent: int = DEFAULT_MIN_REFUNDED_PERCENT,
) -> pl.DataFrame:
    """Wallets held for review as of the run date (WALLET_HOLDS), one row per wallet with its
    reasons (HOLD_REASONS, in that order) and evidence (person_keys, wallet and transaction ids;
    never a My Number). `hold_id` is "HP-<wallet_id>", the key of an operator's decision.

    Sees wallets registered on or before the run date and the valid transactions that occurred
    by then (`transactions` as returned by checked_transactions). A refund cycle is an earning
    transaction refunded by at least `min_refunded_percent` % and followed by a later earning
    transaction on the same wallet; a wallet with `min_refund_cycles` cycles or more is held.
    """
    keys = _persons_by_my_number(persons).select("my_number", "person_key")
    registered = wallets.filter(pl.col("registered_on") <= run_date).join(keys, on="my_number", how="left")
    key_list = pl.col("person_key").drop_nulls().unique().sort().cast(pl.String).str.join(", ")
    # group with integers first; only the few flagged groups are described in words
    shared_ids = (
        registered.group_by("wallet_id").agg(pl.col("my_number").n_unique().alias("persons"))
        .filter(pl.col("persons") > 1)
    )
    shared = (
        registered.join(shared_ids, on="wallet_id", how="inner")
        .group_by("wallet_id", "persons").agg(key_list.alias("keys"))
        .select("wallet_id", reason=pl.lit("shared_wallet"),
                evidence=pl.format("wallet {} linked by {} persons (person_keys {})", "wallet_id", "persons", "keys"))
    )
    several = (
        registered.group_by("my_number").agg(pl.col("wallet_id").n_unique().alias("wallets"))
        .filter(pl.col("wallets") > 1)
    )
    second = (
        registered.join(several, on="my_number", how="inner")
        .with_columns(
            pl.col("wallet_id").unique().sort().cast(pl.String).str.join(", ").over("my_number").alias("ids"),
            pl.col("person_key").min().over("my_number"),
        )
        .select("wallet_id", reason=pl.lit("second_wallet"),
                evidence=pl.format("person_key {} links {} wallets ({})",
                                   pl.col("person_key").cast(pl.String).fill_null("unknown"), "wallets", "ids"))
        .unique()
    )
    usable = transactions.filter(pl.col("reject_reason").is_null() & (pl.col("occurred_at") < _end_of(run_date)))
    refunds = usable.filter(pl.col("kind") == "refund")
    refunded = refunds.group_by("refund_of").agg(
        pl.col("amount_yen").sum().alias("refunded_yen"), pl.col("occurred_at").max().alias("refunded_at"))
    # only wallets with a refund can cycle: narrow to them first (a few % of the rows)
    earning = usable.filter(pl.col("kind").is_in(EARNING_KINDS)).join(
        refunds.select(pl.col("wallet_id").unique()), on="wallet_id", how="semi")
    latest = earning.group_by("wallet_id").agg(pl.col("occurred_at").max().alias("latest_at"))
    cycling = (
        earning.join(refunded, left_on="transaction_id", right_on="refund_of")
        .join(latest, on="wallet_id")
        .filter(
            (pl.col("refunded_yen") * 100 >= pl.col("amount_yen") * min_refunded_percent)
            & (pl.col("latest_at") > pl.col("refunded_at"))
        )
        .group_by("wallet_id")
        .agg(pl.len().alias("cycles"), pl.col("transaction_id").sort().head(5).cast(pl.String).str.join(", "))
        .filter(pl.col("cycles") >= min_refund_cycles)
        .select("wallet_id", reason=pl.lit("refund_cycling"),
                evidence=pl.format("{} charge→refund→charge cycles (refunded transactions {}{})",
                                   "cycles", "transaction_id",
                                   pl.when(pl.col("cycles") > 5).then(pl.lit(", …")).otherwise(pl.lit(""))))
    )
    order = {reason: i for i, reason in enumerate(HOLD_REASONS)}
    owners = wallet_owners(wallets.filter(pl.col("registered_on") <= run_date), persons)
    return (
        pl.concat([shared, second, cycling])
        .with_columns(pl.col("reason").replace_strict(order, return_dtype=pl.Int64).alias("__order"))
        .sort("wallet_id", "__order")
        .group_by("wallet_id", maintain_order=True)
        .agg(pl.col("reason").alias("reasons"), pl.col("evidence").str.join("; "))
        .join(owners.select("wallet_id", "person_key", "service_id"), on="wallet_id", how="left")
        .with_columns(pl.format("HP-{}", "wallet_id").alias("hold_id"))
        .select(WALLET_HOLDS.schema.names())
        .sort("wallet_id")
        .collect()
    )


def holds_in_force(holds: pl.DataFrame, decisions: pl.DataFrame, run_date: date) -> pl.DataFrame:
    """The wallet holds that still stop grants: those without a `release` as the latest
    decision (by decided_on, then file order) on their hold_id decided on or before the run
    date. A `deny` keeps the wallet held for good; a release lets the next night grant the
    wallet's waiting transactions (points_night)."""
    latest = (
        decisions.lazy().filter(pl.col("decided_on") <= run_date)
        .with_row_index("__order")
        .sort("decided_on", "__order")
        .group_by("hold_id").agg(pl.col("decision").last())
        .filter(pl.col("decision") == "release")
    )
    return holds.lazy().join(latest, on="hold_id", how="anti").collect()


# ---- the night ------------------------------------------------------------------------------------


def ignore_reason(cfg: MynapointConfig) -> pl.Expr:
    """IGNORE_REASONS' first reason that an earning transaction (with its wallet's
    registered_on, person_key, died_on, earning_kind (the kind its service rewards, EARNS_ON)
    and is_held) earns nothing; null if none."""
    occurred = pl.col("occurred_at")
    day = occurred.dt.date()
    earning_kind = pl.col("earning_kind")
    rules = {
        "outside_window": (occurred < datetime.combine(cfg.window_start, time()))
        | (occurred >= _end_of(cfg.window_end)),
        "before_registration": day < pl.col("registered_on"),
        "not_earning_kind": earning_kind.is_null() | (pl.col("kind") != earning_kind),
        "unknown_person": pl.col("person_key").is_null(),
        "after_death": day > pl.col("died_on"),
        "held_wallet": pl.col("is_held"),
    }
    return _first_reason(rules).alias("reason")


def points_night(
    transactions: pl.LazyFrame,
    wallets: pl.LazyFrame,
    services: pl.LazyFrame,
    persons: pl.LazyFrame,
    state: PointsState,
    holds: pl.DataFrame,
    cfg: MynapointConfig,
    run_date: date,
) -> PointsNight:
    """The night's points: every earning transaction that occurred by the run date and is not
    in the state yet is granted (or ignored with a reason), every refund not applied yet and
    whose transaction is in the state (or granted tonight) claws back; in order of occurrence
    per person under the cap left from earlier nights.

    `transactions` may be raw (TRANSACTIONS) or as returned by checked_transactions (rejected
    and pending rows are skipped); `persons` has my_number, person_key and died_on as of the run
    date; `holds` has wallet_id (wallet_holds, less the released holds). A held wallet's earning
    transactions are ignored (held_wallet) and stay out of the state, so the first night after
    the hold is released grants them, in order of occurrence, under the room left then; their
    refunds wait with them. Refunds of transactions processed before the hold still claw back.

    Tonight's events are collected (the kernel needs whole arrays per person; ≈0.3 KB per
    event at the peak); the state stays lazy: the next state is the old one (rows kept in their
    order) with tonight's rows appended. To bound memory on a night that catches up on many
    transactions, call it once per group of persons, with `wallets` narrowed to the wallets
    whose owner (wallet_owners) is in the group (their transactions follow), each call's state
    materialised as the next call's.
    """
    wallets, services, persons = wallets.lazy(), services.lazy(), persons.lazy()
    if "reject_reason" not in transactions.collect_schema():
        transactions = checked_transactions(transactions, wallets, run_date)
    usable = transactions.filter(pl.col("reject_reason").is_null() & ~pl.col("is_pending")).select(
        "transaction_id", "wallet_id", "occurred_at", "kind", "amount_yen", "refund_of"
    )
    held = holds.lazy().select(pl.col("wallet_id").unique(), is_held=pl.lit(True))
    earning_kind = pl.col("kind").replace_strict(EARNS_ON, default=None, return_dtype=pl.String)
    wallet_facts = (  # joined per wallet first: one join of the transactions instead of three
        wallet_owners(wallets, persons)
        .join(services.select("service_id", earning_kind.alias("earning_kind")), on="service_id", how="left")
        .join(held, on="wallet_id", how="left")
        .with_columns(pl.col("is_held").fill_null(False))
    )
    tonight = _tonight(usable.join(wallet_facts, on="wallet_id", how="inner"), state, cfg, run_date)
    lines = settlement.settlement_lines(tonight.grants)
    return PointsNight(
        grants=tonight.grants,
        ignored=tonight.ignored.sort("transaction_id"),
        state=_next_state(state, tonight.grants, tonight.touched, run_date),
        settlement=lines,
        totals=settlement.point_totals(tonight.grants, lines),
    )


EVENT_COLUMNS = ["transaction_id", "wallet_id", "person_key", "service_id", "occurred_at", "kind", "amount_yen",
                 "refund_of"]


class _Tonight(NamedTuple):
    grants: pl.DataFrame  # GRANTS, in kernel order
    ignored: pl.DataFrame  # IGNORED
    touched: pl.DataFrame  # POINTS_TRANSACTIONS rows granted or refunded tonight


def _tonight(enriched: pl.LazyFrame, state: PointsState, cfg: MynapointConfig, run_date: date) -> _Tonight:
    """Tonight's events through the cap kernel; `enriched` is the usable transactions with
    their wallet's facts."""
    earning = (
        enriched.filter(pl.col("kind") != "refund")
        .join(state.transactions.select("transaction_id"), on="transaction_id", how="anti")
        .with_columns(ignore_reason(cfg))
    )
    fresh, ignored_earning, refunds = pl.collect_all([
        earning.filter(pl.col("reason").is_null()).select(EVENT_COLUMNS),
        earning.filter(pl.col("reason").is_not_null()).select(IGNORED.schema.names()),
        enriched.filter(pl.col("kind") == "refund")
        .join(state.refunds.select("transaction_id"), on="transaction_id", how="anti")
        .select(EVENT_COLUMNS),
    ])
    in_state = refunds.lazy().join(
        state.transactions.select(pl.col("transaction_id").alias("refund_of")), on="refund_of", how="semi"
    ).collect()
    # probe the many fresh ids against the few refunded ones (a hash of the small side)
    refunded_fresh = fresh.filter(pl.col("transaction_id").is_in(refunds["refund_of"].implode()))["transaction_id"]
    of_fresh = refunds.filter(pl.col("refund_of").is_in(refunded_fresh.implode()))
    waiting = refunds.join(pl.concat([in_state, of_fresh]).select("transaction_id"), on="transaction_id", how="anti")
    ignored = pl.concat([
        ignored_earning,
        waiting.join(ignored_earning.select(pl.col("transaction_id").alias("refund_of"), "reason"), on="refund_of")
        .select(IGNORED.schema.names()),
    ])
    grants, touched = _applied_events(pl.concat([fresh, in_state, of_fresh]), state, cfg, run_date)
    return _Tonight(grants=grants, ignored=ignored, touched=touched)


def _applied_events(events: pl.DataFrame, state: PointsState, cfg: MynapointConfig,
                    run_date: date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(grants, state rows touched): the cap kernel over the events in kernel order.

    Slots (the kernel's per-transaction memory): a transaction granted tonight uses its own
    event's position (reads stay sequential); a transaction from the state that is refunded
    tonight gets a slot after the events, filled from the state.
    """
    events = events.sort("person_key", "occurred_at", "transaction_id").with_row_index("event")
    n = events.height
    is_refund = (events["kind"] == "refund").to_numpy()
    refund_rows = events.filter(pl.col("kind") == "refund").select("event", "refund_of")
    grant_slots = events.filter(
        (pl.col("kind") != "refund") & pl.col("transaction_id").is_in(refund_rows["refund_of"].implode())
    ).select(pl.col("transaction_id").alias("refund_of"), pl.col("event").alias("slot"))
    refund_slots = refund_rows.join(grant_slots, on="refund_of", how="left", maintain_order="left")
    targets = refund_slots.filter(pl.col("slot").is_null()).select(pl.col("refund_of").unique().sort())
    earlier = (
        state.transactions.join(targets.lazy().rename({"refund_of": "transaction_id"}), on="transaction_id",
                                how="semi")
        .sort("transaction_id")
        .collect()
    )
    refund_slots = refund_slots.join(
        earlier.select(pl.col("transaction_id").alias("refund_of"),
                       (pl.int_range(pl.len(), dtype=pl.UInt32) + n).alias("earlier_slot")),
        on="refund_of", how="left", maintain_order="left",
    )
    slot = np.arange(n, dtype=np.int64)
    slot[refund_slots["event"].to_numpy()] = refund_slots.select(
        pl.coalesce("slot", "earlier_slot").cast(pl.Int64))["slot"].to_numpy()
    initial = {c: np.concatenate([np.zeros(n, dtype=np.int64), _int64(earlier[c])])
               for c in ("net_amount_yen", "points_first_yen", "points_current_yen")}
    granted = (
        state.persons.join(events.lazy().select(pl.col("person_key").unique()), on="person_key", how="semi")
        .collect()
    )
    room = events.select(
        cfg.cap_per_person_yen
        - pl.col("person_key").replace_strict(granted["person_key"], granted["granted_yen"], default=0,
                                              return_dtype=pl.Int64)
    )
    change, net, first, current = kernels.capped_point_changes(
        _int64(events["person_key"]), np.ascontiguousarray(is_refund), _int64(events["amount_yen"]), slot,
        _int64(room.to_series()), initial["net_amount_yen"], initial["points_first_yen"],
        initial["points_current_yen"], cfg.rate_percent,
    )
    full = cfg.rate_percent * pl.col("amount_yen") // 100
    delta = pl.col("points_delta_yen")
    grants = events.with_columns(points_delta_yen=pl.Series(change, dtype=pl.Int64)).with_columns(
        pl.when(pl.col("kind") == "refund")
        .then(pl.when(delta < 0).then(pl.lit("clawback")).otherwise(pl.lit("refund_kept")))
        .when(delta == full).then(pl.lit("earned"))
        .otherwise(pl.lit("capped"))
        .alias("reason")
    )
    night = pl.lit(run_date, dtype=pl.Date)
    new_rows = (
        grants.with_columns(net_amount_yen=pl.Series(net[:n]), points_first_yen=pl.Series(first[:n]),
                            points_current_yen=pl.Series(current[:n]), processed_on=night, updated_on=night)
        .filter(pl.col("kind") != "refund")
    )
    changed_rows = earlier.with_columns(
        net_amount_yen=pl.Series(net[n:], dtype=pl.Int64), points_current_yen=pl.Series(current[n:], dtype=pl.Int64),
        updated_on=night,
    )
    touched = pl.concat([new_rows.select(POINTS_TRANSACTIONS.schema.names()), changed_rows])
    return grants.select(GRANTS.schema.names()), touched


def _next_state(state: PointsState, grants: pl.DataFrame, touched: pl.DataFrame, run_date: date) -> PointsState:
    """The old state, rows in their order, with tonight's changes: refunded transactions move
    to the end with their new values, new ones are appended (sorted), as are tonight's refunds
    and persons; each person's granted_yen moves by tonight's changes. No global sort: the
    state grows by a night's rows, not by a rewrite in a new order."""
    touched = touched.sort("transaction_id")
    transactions = pl.concat([
        state.transactions.join(touched.lazy().select("transaction_id"), on="transaction_id", how="anti",
                                maintain_order="left"),
        touched.lazy(),
    ])
    refunds_tonight = grants.filter(pl.col("kind") == "refund").select(
        "transaction_id", "refund_of", "amount_yen", "occurred_at",
        (-pl.col("points_delta_yen")).alias("clawed_back_yen"), applied_on=pl.lit(run_date, dtype=pl.Date),
    ).sort("transaction_id")
    refunds = pl.concat([state.refunds, refunds_tonight.lazy()])
    tonight = grants.group_by("person_key").agg(pl.col("points_delta_yen").sum().alias("tonight_yen")).lazy()
    persons = pl.concat([
        state.persons.join(tonight, on="person_key", how="left", maintain_order="left")
        .select("person_key", (pl.col("granted_yen") + pl.col("tonight_yen").fill_null(0)).alias("granted_yen")),
        tonight.join(state.persons, on="person_key", how="anti")
        .select("person_key", pl.col("tonight_yen").alias("granted_yen")).sort("person_key"),
    ])
    return PointsState(transactions=transactions, refunds=refunds, persons=persons)


def _int64(series: pl.Series) -> np.ndarray:
    return np.ascontiguousarray(series.cast(pl.Int64).to_numpy())
