"""Synthetic Mynapoint data (research §2.2): services, wallets and their transactions.

Ids derive from the person, so chunks need no shared counter: wallet_id = 2·key + 1 (2·key + 2
for a planted second wallet), transaction_id = wallet_id · 1000 + sequence within the wallet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from engine import schemas
from engine.synth import tables
from engine.synth.faults import FaultRates, _days_between, truth_rows
from engine.synth.population import NO_DAY, Households, People, dates

DAY = tables.MICROSECONDS_PER_DAY
HOUR = DAY // 24
TRANSACTIONS_PER_WALLET_LIMIT = 1000  # the sequence part of transaction_id
CYCLE_AMOUNT_YEN = 20_000  # the spend that earns the whole ¥5,000 cap
TRANSACTION_KINDS = pl.Series(["charge", "purchase", "refund"])
CHARGE, PURCHASE, REFUND = range(3)


def kinds(codes: np.ndarray) -> pl.Series:
    """Transaction kind strings from codes (gathering is ~25x faster than numpy strings)."""
    return TRANSACTION_KINDS.gather(codes)


def services(seed: int) -> pl.DataFrame:
    """The registered cashless services (SERVICES contract): well-known ones, then numbered ones."""
    rng = np.random.default_rng([seed, 0x5345])
    unnamed = tables.SERVICE_COUNT - len(tables.KNOWN_SERVICES)
    names = [n for n, _ in tables.KNOWN_SERVICES] + [
        f"Cashless Service {i:03d}" for i in range(len(tables.KNOWN_SERVICES) + 1, tables.SERVICE_COUNT + 1)
    ]
    kinds = [k for _, k in tables.KNOWN_SERVICES] + list(
        np.where(rng.random(unnamed) < tables.PREPAID_SHARE, "prepaid", "postpaid"))
    return pl.DataFrame({
        "service_id": np.arange(1, tables.SERVICE_COUNT + 1, dtype=np.int64),
        "name": names,
        "kind": kinds,
    }).select(schemas.SERVICES.schema.names())


def service_probability() -> np.ndarray:
    """Zipf shares over services in id order: the well-known services come first and dominate."""
    weight = 1.0 / np.arange(1, tables.SERVICE_COUNT + 1) ** tables.SERVICE_ZIPF_EXPONENT
    return weight / weight.sum()


@dataclass(frozen=True)
class Wallets:
    frame: pl.DataFrame  # WALLETS contract
    truth: pl.DataFrame
    wallet_id: np.ndarray
    my_number: np.ndarray
    household_id: np.ndarray
    registered_on: np.ndarray  # int32 days
    is_prepaid: np.ndarray  # the wallet's service earns on charges
    is_second: np.ndarray  # a planted second wallet of a person, or that person's first one


def wallets(rng: np.random.Generator, register: People, households: Households,
            service_is_prepaid: np.ndarray, rates: FaultRates) -> Wallets:
    """About a fifth of persons link one wallet (25M of 125M); a few planted persons link two."""
    share = np.where(register.age_years >= tables.ADULT_AGE, tables.ADULT_WALLET_SHARE, tables.MINOR_WALLET_SHARE)
    alive_at_signup = (register.died_on == NO_DAY) | (register.died_on > tables.WALLETS_FROM_DAY + 1)
    owner = np.flatnonzero((rng.random(len(register)) < share) & ~register.is_planted & alive_at_signup)
    count = owner.size
    service = rng.choice(tables.SERVICE_COUNT, size=count, p=service_probability())
    registered = _days_between(rng, np.full(count, tables.WALLETS_FROM_DAY), np.full(count, tables.WINDOW_TO_DAY))
    died = register.died_on[owner]
    registered = np.where(died == NO_DAY, registered, np.minimum(registered, died - 1)).astype(np.int32)

    survivors = np.flatnonzero(died == NO_DAY)
    second = np.sort(rng.choice(survivors, size=min(int(rng.binomial(count, rates.second_wallet)), survivors.size), replace=False))
    second_service = (service[second] + rng.integers(1, tables.SERVICE_COUNT, second.size)) % tables.SERVICE_COUNT
    second_registered = np.minimum(registered[second] + rng.integers(1, 61, second.size), tables.WINDOW_TO_DAY)
    holder = np.concatenate([owner, owner[second]])
    key = register.person_key[holder]
    wallet_id = 2 * key + 1 + np.r_[np.zeros(count, dtype=np.int64), np.ones(second.size, dtype=np.int64)]
    all_services = np.concatenate([service, second_service])
    registered_on = np.concatenate([registered, second_registered]).astype(np.int32)
    my_number = register.my_number[holder]
    household_id = households.household_id[register.household[holder]]
    is_second = np.zeros(holder.size, dtype=bool)
    is_second[second] = True
    is_second[count:] = True
    frame = pl.DataFrame({
        "wallet_id": wallet_id,
        "my_number": my_number,
        "service_id": all_services.astype(np.int64) + 1,
        "registered_on": dates(registered_on),
    }).select(schemas.WALLETS.schema.names()).sort("wallet_id")
    planted = np.flatnonzero(is_second)
    truth = truth_rows("second_wallet", "wallets", household_id[planted], my_number[planted],
                       wallet_id=wallet_id[planted])
    return Wallets(frame=frame, truth=truth, wallet_id=wallet_id, my_number=my_number,
                   household_id=household_id, registered_on=registered_on,
                   is_prepaid=service_is_prepaid[all_services], is_second=is_second)


def _between(rng: np.random.Generator, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """A uniform microsecond in [low, high], elementwise."""
    return low + np.floor(rng.random(low.size) * (np.maximum(high, low) - low + 1)).astype(np.int64)


def sorted_within(rng: np.random.Generator, counts: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """counts[i] uniform microseconds in [low[i], high[i]], ascending within each i, without a
    sort: normalised cumulative sums of exponential gaps are sorted uniforms (Rényi)."""
    gaps = rng.exponential(1.0, counts.sum() + counts.size)
    group = np.repeat(np.arange(counts.size), counts + 1)
    total = np.cumsum(gaps)
    before = np.r_[0.0, total][np.cumsum(counts + 1) - counts - 1]  # cumsum before each group
    span_total = total[np.cumsum(counts + 1) - 1] - before
    fraction = (total - before[group]) / span_total[group]
    keep = np.ones(total.size, dtype=bool)
    keep[np.cumsum(counts + 1) - 1] = False  # the last gap of each group only closes the span
    owner = group[keep]
    return low[owner] + np.floor(fraction[keep] * (high[owner] - low[owner])).astype(np.int64)


def _choose(rng: np.random.Generator, candidates: np.ndarray, count: int) -> np.ndarray:
    return np.sort(rng.choice(candidates, size=min(count, candidates.size), replace=False))


def transactions(rng: np.random.Generator, owned: Wallets, rates: FaultRates) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Charges and purchases (≈8 per wallet, skewed), natural refunds, and the planted
    charge-refund cycles and out-of-window or before-registration transactions; plus truth."""
    count = owned.wallet_id.size
    per_wallet = np.minimum(
        rng.negative_binomial(tables.TRANSACTIONS_DISPERSION,
                              tables.TRANSACTIONS_DISPERSION / (tables.TRANSACTIONS_DISPERSION + tables.MEAN_TRANSACTIONS_PER_WALLET),
                              count),
        tables.MAX_TRANSACTIONS_PER_WALLET)
    wallet = np.repeat(np.arange(count), per_wallet)
    rows = wallet.size
    registered_us = owned.registered_on.astype(np.int64) * DAY
    window_from, window_end = tables.WINDOW_FROM_DAY * DAY, (tables.WINDOW_TO_DAY + 1) * DAY - 1
    occurred = sorted_within(rng, per_wallet, np.maximum(registered_us, window_from), np.full(count, window_end))
    qualifying_kind = owned.is_prepaid[wallet]  # True: charge, False: purchase
    is_charge = np.where(rng.random(rows) < tables.KIND_MATCHES_SERVICE_SHARE, qualifying_kind, ~qualifying_kind)
    amount = np.clip(np.rint(rng.lognormal(np.log(tables.AMOUNT_MEDIAN_YEN), tables.AMOUNT_SIGMA, rows)),
                     tables.AMOUNT_MIN_YEN, tables.AMOUNT_MAX_YEN).astype(np.int64)

    # planted: charge-refund cycling on prepaid wallets registered well before the window ends
    cycling = _choose(rng, np.flatnonzero(owned.is_prepaid & ~owned.is_second
                                          & (owned.registered_on <= tables.WINDOW_TO_DAY - 30)),
                      int(rng.binomial(count, rates.refund_cycling)))
    ordinary_wallet = np.ones(count, dtype=bool)
    ordinary_wallet[cycling] = False
    ordinary_wallet &= ~owned.is_second
    # planted: a qualifying transaction before the wallet's registration (inside the window) …
    late_registration = owned.registered_on > tables.WINDOW_FROM_DAY + 7
    early = _choose(rng, np.flatnonzero((ordinary_wallet & late_registration)[wallet]),
                    int(rng.binomial(rows, rates.transaction_before_registration)))
    free = np.ones(rows, dtype=bool)
    free[early] = False
    # … or outside the points window (before 2020-09-01 if registered before, else in 2022)
    outside = _choose(rng, np.flatnonzero(ordinary_wallet[wallet] & free),
                      int(rng.binomial(rows, rates.transaction_outside_window)))
    free[outside] = False
    occurred[early] = _between(rng, np.maximum(registered_us[wallet[early]] - 30 * DAY, window_from),
                               registered_us[wallet[early]] - 1)
    registered_early = registered_us[wallet[outside]] < window_from
    occurred[outside] = np.where(
        registered_early,
        _between(rng, registered_us[wallet[outside]], np.full(outside.size, window_from - 1)),
        _between(rng, np.full(outside.size, window_end + 1),
                 np.full(outside.size, (tables.LATE_TRANSACTIONS_TO_DAY + 1) * DAY - 1)))
    planted_rows = np.concatenate([early, outside])
    is_charge[planted_rows] = qualifying_kind[planted_rows]

    # ids follow time within a wallet (but for the planted rows moved in time)
    first_row = np.cumsum(per_wallet) - per_wallet
    transaction_id = owned.wallet_id[wallet] * TRANSACTIONS_PER_WALLET_LIMIT + (np.arange(rows) - first_row[wallet])

    cycle = _cycles(rng, owned, cycling, per_wallet)
    refund = _refunds(rng, wallet, occurred, amount, transaction_id, free & ordinary_wallet[wallet],
                      per_wallet + np.bincount(cycle["wallet"], minlength=count), owned)
    base = pl.DataFrame({
        "transaction_id": transaction_id,
        "wallet_id": owned.wallet_id[wallet],
        "occurred_at": occurred,
        "kind": kinds(np.where(is_charge, CHARGE, PURCHASE)),
        "amount_yen": amount,
        "refund_of": pl.Series([None] * rows, dtype=pl.Int64),
    })
    frame = (
        pl.concat([base, cycle.drop("wallet"), refund], how="vertical_relaxed")
        .with_columns(pl.col("occurred_at").cast(pl.Datetime("us")))
        .select(schemas.TRANSACTIONS.schema.names())
        .sort("transaction_id")
    )
    truth = pl.concat([
        truth_rows("refund_cycling", "transactions", owned.household_id[cycling], owned.my_number[cycling],
                   wallet_id=owned.wallet_id[cycling]),
        truth_rows("transaction_before_registration", "transactions", owned.household_id[wallet[early]],
                   owned.my_number[wallet[early]], wallet_id=owned.wallet_id[wallet[early]],
                   transaction_id=transaction_id[early]),
        truth_rows("transaction_outside_window", "transactions", owned.household_id[wallet[outside]],
                   owned.my_number[wallet[outside]], wallet_id=owned.wallet_id[wallet[outside]],
                   transaction_id=transaction_id[outside]),
    ])
    return frame, truth


def _cycles(rng: np.random.Generator, owned: Wallets, cycling: np.ndarray, per_wallet: np.ndarray) -> pl.DataFrame:
    """3-5 cycles per wallet: charge ¥20,000, refund it an hour later, charge again …, then a last
    charge. Sequence numbers continue after the wallet's ordinary transactions."""
    cycles = rng.integers(3, 6, cycling.size)
    steps = 2 * cycles + 1
    wallet = np.repeat(cycling, steps)
    step = np.arange(wallet.size) - np.repeat(np.cumsum(steps) - steps, steps)
    registered_us = owned.registered_on[cycling].astype(np.int64) * DAY
    start = _between(rng, np.maximum(registered_us, tables.WINDOW_FROM_DAY * DAY),
                     np.full(cycling.size, (tables.WINDOW_TO_DAY - 10) * DAY))
    transaction_id = owned.wallet_id[wallet] * TRANSACTIONS_PER_WALLET_LIMIT + per_wallet[wallet] + step
    is_refund = step % 2 == 1
    return pl.DataFrame({
        "transaction_id": transaction_id,
        "wallet_id": owned.wallet_id[wallet],
        "occurred_at": np.repeat(start, steps) + step * HOUR,
        "kind": kinds(np.where(is_refund, REFUND, CHARGE)),
        "amount_yen": np.full(wallet.size, CYCLE_AMOUNT_YEN, dtype=np.int64),
        "refund_of": pl.Series(np.where(is_refund, transaction_id - 1, 0)).replace(0, None),
        "wallet": wallet,
    })


def _refunds(rng: np.random.Generator, wallet: np.ndarray, occurred: np.ndarray, amount: np.ndarray,
             transaction_id: np.ndarray, eligible: np.ndarray, used: np.ndarray, owned: Wallets) -> pl.DataFrame:
    """≈2% of transactions refunded, at most one per wallet: 60% in full, 30% in part, 10% in two
    partial refunds. Refunds come 1 hour to 30 days after the transaction."""
    picked = np.flatnonzero(eligible & (rng.random(wallet.size) < tables.REFUND_SHARE))
    picked = picked[np.unique(wallet[picked], return_index=True)[1]]
    mode = rng.random(picked.size)
    repeated = mode < tables.REPEATED_REFUND_SHARE
    partial = ~repeated & (mode < tables.REPEATED_REFUND_SHARE + tables.PARTIAL_REFUND_SHARE)
    original = np.concatenate([picked, picked[repeated]])
    share = np.where(partial, rng.uniform(0.1, 0.9, picked.size), np.where(repeated, rng.uniform(0.1, 0.45, picked.size), 1.0))
    share = np.concatenate([share, rng.uniform(0.1, 0.45, int(repeated.sum()))])
    refunded = np.maximum(np.floor(amount[original] * share), 1).astype(np.int64)
    first_delay = _between(rng, np.full(picked.size, HOUR), np.full(picked.size, 30 * DAY))
    delay = np.concatenate([first_delay, first_delay[repeated] + _between(
        rng, np.full(int(repeated.sum()), HOUR), np.full(int(repeated.sum()), 10 * DAY))])
    second = np.r_[np.zeros(picked.size, dtype=np.int64), np.ones(int(repeated.sum()), dtype=np.int64)]
    return pl.DataFrame({
        "transaction_id": owned.wallet_id[wallet[original]] * TRANSACTIONS_PER_WALLET_LIMIT + used[wallet[original]] + second,
        "wallet_id": owned.wallet_id[wallet[original]],
        "occurred_at": occurred[original] + delay,
        "kind": kinds(np.full(original.size, REFUND)),
        "amount_yen": refunded,
        "refund_of": transaction_id[original],
    })
