"""Points: Mynapoint grants and clawbacks of one night under each person's cumulative cap.

transactions + wallets + services + persons + holds + state (earlier nights) → PointsNight:
`grants` (one row per event tonight: +grant / −clawback), `ignored` (with reasons), the updated
`state`, the per-wallet `settlement` owed to each provider, and per-service `totals`.
The transaction checks and wallet holds that come first are engine/point_checks.py.

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

from datetime import date, datetime, time
from typing import NamedTuple

import numpy as np
import polars as pl

from engine import kernels, point_checks, settlement, sorted_index
from engine.config import MynapointConfig
from engine.schemas import Contract

EARNS_ON = {"prepaid": "charge", "postpaid": "purchase"}  # services.kind → the kind that earns

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
        | (occurred >= point_checks.end_of(cfg.window_end)),
        "before_registration": day < pl.col("registered_on"),
        "not_earning_kind": earning_kind.is_null() | (pl.col("kind") != earning_kind),
        "unknown_person": pl.col("person_key").is_null(),
        "after_death": day > pl.col("died_on"),
        "held_wallet": pl.col("is_held"),
    }
    return point_checks.first_reason(rules).alias("reason")


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

    `transactions` may be raw (TRANSACTIONS) or as returned by point_checks.checked_transactions
    (rejected and pending rows are skipped); `persons` has my_number, person_key and died_on as
    of the run date; `holds` has wallet_id (point_checks.wallet_holds, less the released holds).
    A held wallet's earning transactions are ignored (held_wallet) and stay out of the state, so
    the first night after the hold is released grants them, in order of occurrence, under the
    room left then; their refunds wait with them. Refunds of transactions processed before the
    hold still claw back.

    Tonight's events are collected (the kernel needs whole arrays per person; ≈0.3 KB per
    event at the peak); the state stays lazy: the next state is the old one (rows kept in their
    order) with tonight's rows appended. To bound memory on a night that catches up on many
    transactions, call it once per group of persons, with `wallets` narrowed to the wallets
    whose owner (point_checks.wallet_owners) is in the group (their transactions follow), each
    call's state materialised as the next call's.
    """
    wallets, services, persons = wallets.lazy(), services.lazy(), persons.lazy()
    if "reject_reason" not in transactions.collect_schema():
        transactions = point_checks.checked_transactions(transactions, wallets, run_date)
    usable = transactions.filter(pl.col("reject_reason").is_null() & ~pl.col("is_pending")).select(
        "transaction_id", "wallet_id", "occurred_at", "kind", "amount_yen", "refund_of"
    )
    held = holds.lazy().select(pl.col("wallet_id").unique(), is_held=pl.lit(True))
    earning_kind = pl.col("kind").replace_strict(EARNS_ON, default=None, return_dtype=pl.String)
    wallet_facts = (  # joined per wallet first: one join of the transactions instead of three
        point_checks.wallet_owners(wallets, persons)
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
    events = _in_kernel_order(events).with_row_index("event")
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


def _in_kernel_order(events: pl.DataFrame) -> pl.DataFrame:
    """The events sorted by (person_key, occurred_at, transaction_id), persons without a key
    first: events.sort of those columns, by sorted_index.lexsort3 (a person's events are few)."""
    if events.height < 2:
        return events
    events = events.rechunk()  # the gather below is 2-3x slower over the chunks of a collect
    keys = events.select(pl.col("person_key").fill_null(np.iinfo(np.int64).min), pl.col("occurred_at").cast(pl.Int64),
                         "transaction_id")
    return events[pl.Series(sorted_index.lexsort3(*(_int64(keys[c]) for c in keys.columns)))]


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
