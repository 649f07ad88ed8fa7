"""Point checks: the Mynapoint transaction checks and wallet holds that come before the night.

transactions + wallets → checked_transactions (each row with `reject_reason`, `detail` and
`is_pending`); wallets + checked transactions + persons → wallet_holds (WALLET_HOLDS: one row
per held wallet with its HOLD_REASONS and evidence) → holds_in_force (less the released holds),
which points.points_night does not grant; wallet_owners: each wallet's owner.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import polars as pl

from engine import validate
from engine.schemas import Contract

EARNING_KINDS = ("charge", "purchase")
KINDS = (*EARNING_KINDS, "refund")

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
HOLD_REASONS = {
    "shared_wallet": "one wallet_id is linked by more than one My Number",
    "second_wallet": "the person links more than one wallet (all the person's wallets are held)",
    "refund_cycling": "charge→refund→charge cycles on the wallet (research §2.5, SII 不当取引)",
}
# refund cycling: a planted cycling wallet has 3–5 cycles of ¥20,000 (engine/synth/points.py);
# an ordinary wallet has at most one refunded transaction, so 3 separates them with a margin
DEFAULT_MIN_REFUND_CYCLES = 3
DEFAULT_MIN_REFUNDED_PERCENT = 50  # a transaction refunded at least this much counts as a cycle

WALLET_HOLDS = Contract("point_holds", pl.Schema({
    "hold_id": pl.String, "wallet_id": pl.Int64, "person_key": pl.Int64, "service_id": pl.Int64,
    "reasons": pl.List(pl.String), "evidence": pl.String,
}))


def end_of(day: date) -> datetime:
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
    is_copy = validate.later_copies(transactions, ["transaction_id"], index="__row")[0]
    refunds = _refund_reasons(indexed, wallet_ids, is_copy).collect()
    refund_detail = _refund_detail().alias("__refund_detail")
    lookup = refunds.filter(pl.col("__refund_reason").is_not_null()).with_columns(refund_detail)
    rows = lookup["__row"]
    checked = _with_basic_reason(indexed, wallet_ids, is_copy).with_columns(
        pl.coalesce(
            "reject_reason",
            pl.col("__row").replace_strict(rows, lookup["__refund_reason"], default=None, return_dtype=pl.String),
        ).alias("reject_reason"),
        (pl.col("occurred_at") >= end_of(run_date)).fill_null(False).alias("is_pending"),
    )
    return checked.with_columns(
        pl.coalesce(
            _basic_detail(),
            pl.col("__row").replace_strict(rows, lookup["__refund_detail"], default=None, return_dtype=pl.String),
        ).alias("detail")
    ).drop("__row")


def _with_basic_reason(indexed: pl.LazyFrame, wallet_ids: pl.Series, is_copy: pl.Expr) -> pl.LazyFrame:
    """`reject_reason` by the rules that read one row (and the wallet ids, and whether an earlier
    row has the same transaction_id: `is_copy`, validate.later_copies over `__row`)."""
    required = ("transaction_id", "wallet_id", "occurred_at", "kind", "amount_yen")
    is_refund = pl.col("kind") == "refund"
    rules = {
        "missing_value": pl.any_horizontal(pl.col(c).is_null() for c in required)
        | (is_refund & pl.col("refund_of").is_null()),
        "duplicate_key": is_copy,
        "invalid_value": ~pl.col("kind").is_in(KINDS) | (~is_refund & pl.col("refund_of").is_not_null()),
        "amount_not_positive": pl.col("amount_yen") <= 0,
        "unknown_wallet": ~pl.col("wallet_id").is_in(wallet_ids.implode()),
    }
    return indexed.with_columns(first_reason(rules))


def _refund_reasons(indexed: pl.LazyFrame, wallet_ids: pl.Series, is_copy: pl.Expr) -> pl.LazyFrame:
    """The refund rules' reason for every refund that passes the basic rules (`__refund_reason`,
    null when valid), with the values its detail quotes."""
    # refunds and the transactions they name (duplicate_key is decided over all rows: is_copy)
    refund_ids = indexed.filter(pl.col("kind") == "refund").select(
        pl.concat_list("transaction_id", "refund_of").explode().drop_nulls().unique().alias("transaction_id")
    )
    involved = _with_basic_reason(
        indexed.join(refund_ids, on="transaction_id", how="semi").sort("__row"), wallet_ids, is_copy
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


def first_reason(rules: dict[str, pl.Expr]) -> pl.Expr:
    """`reject_reason`: the name of the first rule broken (a null counts as not broken), or null."""
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
    usable = transactions.filter(pl.col("reject_reason").is_null() & (pl.col("occurred_at") < end_of(run_date)))
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
    held = (
        pl.concat([shared, second, cycling])
        .with_columns(pl.col("reason").replace_strict(order, return_dtype=pl.Int64).alias("__order"))
        .sort("wallet_id", "__order")
        .group_by("wallet_id", maintain_order=True)
        .agg(pl.col("reason").alias("reasons"), pl.col("evidence").str.join("; "))
        .collect()
    )
    # the owners of the held wallets only (a few in a thousand): not every wallet grouped
    held_wallets = wallets.filter(pl.col("registered_on") <= run_date).join(
        held.lazy().select("wallet_id"), on="wallet_id", how="semi")
    owners = wallet_owners(held_wallets, persons)
    return (
        held.lazy()
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
