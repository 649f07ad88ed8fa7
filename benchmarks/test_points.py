"""The points stage at 1M and 10M transactions, and its cap kernel against the best pure-Polars
formulation found (one group each).

Off by default (`--benchmark-disable` in addopts: each case then runs once, as a test). Measure:

    .venv/bin/pytest benchmarks/test_points.py --benchmark-enable -m ""

Data: a seeded synthetic maker (below), shaped like the generator's Mynapoint data (≈8
transactions per wallet, lognormal amounts, 97% of the kind the service rewards, 2% refunded,
some partially or twice, 1% of persons dead) but an order of magnitude faster to make.
"""

from __future__ import annotations

import functools
from datetime import date
from typing import NamedTuple

import numpy as np
import polars as pl
import pytest

from engine import kernels, point_checks, points
from engine.config import MynapointConfig

SEED = 0
CFG = MynapointConfig()
RUN = date(2022, 1, 31)
DAY_US = 86_400_000_000
WINDOW_FROM = np.datetime64("2020-09-01", "us").astype(np.int64)
WINDOW_TO = np.datetime64("2022-01-01", "us").astype(np.int64) - 1


class Inputs(NamedTuple):
    transactions: pl.DataFrame
    wallets: pl.DataFrame
    services: pl.DataFrame
    persons: pl.DataFrame


@functools.cache
def synthetic_inputs(n_transactions: int, seed: int = SEED) -> Inputs:
    """About n_transactions transactions (refunds included) over n/8 wallets, one per person."""
    rng = np.random.default_rng(seed)
    n_wallets = max(n_transactions // 8, 1)
    services = pl.DataFrame({
        "service_id": np.arange(1, 119, dtype=np.int64),
        "name": [f"Service {i}" for i in range(1, 119)],
        "kind": np.where(rng.random(118) < 0.7, "prepaid", "postpaid"),
    })
    prepaid = (services["kind"] == "prepaid").to_numpy()
    service = rng.integers(0, 118, n_wallets)
    registered_day = rng.integers(np.datetime64("2020-07-01", "D").astype(np.int64),
                                  np.datetime64("2021-12-31", "D").astype(np.int64), n_wallets)
    wallets = pl.DataFrame({
        "wallet_id": np.arange(1, n_wallets + 1, dtype=np.int64),
        "my_number": np.arange(1, n_wallets + 1, dtype=np.int64) * 7919,  # stand-ins: never checked here
        "service_id": service + 1,
        "registered_on": registered_day.astype("datetime64[D]"),
    })
    died = np.where(rng.random(n_wallets) < 0.01,
                    rng.integers(WINDOW_FROM // DAY_US, WINDOW_TO // DAY_US, n_wallets), np.iinfo(np.int64).min)
    persons = pl.DataFrame({
        "my_number": wallets["my_number"],
        "person_key": np.arange(1, n_wallets + 1, dtype=np.int64),
        "died_on": pl.Series(died).replace(np.iinfo(np.int64).min, None).cast(pl.Int32).cast(pl.Date),
    })
    earning = int(n_transactions / 1.02)
    wallet = rng.integers(0, n_wallets, earning)
    low = np.maximum(registered_day[wallet] * DAY_US, WINDOW_FROM - 10 * DAY_US)
    occurred = low + (rng.random(earning) * (WINDOW_TO + 20 * DAY_US - low)).astype(np.int64)
    is_charge = np.where(rng.random(earning) < 0.97, prepaid[service[wallet]], ~prepaid[service[wallet]])
    amount = np.clip(np.rint(rng.lognormal(np.log(3_000), 0.9, earning)), 500, 50_000).astype(np.int64)
    transaction_id = np.arange(1, earning + 1, dtype=np.int64)
    refunded = np.flatnonzero(rng.random(earning) < 0.02)
    twice = refunded[rng.random(refunded.size) < 0.1]
    original = np.concatenate([refunded, twice])
    share = np.where(rng.random(original.size) < 0.6, 1.0, rng.uniform(0.1, 0.45, original.size))
    share[refunded.size:] = rng.uniform(0.1, 0.45, twice.size)
    share[:refunded.size][np.isin(refunded, twice)] = rng.uniform(0.1, 0.45, np.isin(refunded, twice).sum())
    refund_amount = np.maximum(np.floor(amount[original] * share), 1).astype(np.int64)
    delay = rng.integers(3_600_000_000, 30 * DAY_US, original.size)
    delay[refunded.size:] += 10 * DAY_US
    frame = pl.DataFrame({
        "transaction_id": np.concatenate([transaction_id, earning + 1 + np.arange(original.size, dtype=np.int64)]),
        "wallet_id": np.concatenate([wallet, wallet[original]]) + 1,
        "occurred_at": np.concatenate([occurred, occurred[original] + delay]).astype("datetime64[us]"),
        "kind": pl.Series(["charge", "purchase", "refund"]).gather(
            np.concatenate([np.where(is_charge, 0, 1), np.full(original.size, 2)])),
        "amount_yen": np.concatenate([amount, refund_amount]),
        "refund_of": pl.Series(np.concatenate([np.zeros(earning, dtype=np.int64), transaction_id[original]]))
        .replace(0, None),
    }).sort("transaction_id")
    return Inputs(frame, wallets, services, persons)


def points_stage(data: Inputs, run_date: date = RUN) -> points.PointsNight:
    """The whole stage for one night from an empty state: validate, holds, grants, new state."""
    wallets, persons = data.wallets.lazy(), data.persons.lazy()
    checked = point_checks.checked_transactions(data.transactions.lazy(), wallets, run_date).collect().lazy()
    holds = point_checks.wallet_holds(wallets, checked, persons, run_date)
    night = points.points_night(checked, wallets, data.services.lazy(), persons, points.empty_points_state(),
                                holds, CFG, run_date)
    return night._replace(state=points.PointsState(*pl.collect_all(list(night.state))))


@pytest.mark.parametrize("n", [1_000_000, pytest.param(10_000_000, marks=pytest.mark.slow)])
def test_points_stage(benchmark, n: int) -> None:
    data = synthetic_inputs(n)
    benchmark.group = f"points stage|{n}"
    benchmark.extra_info["transactions"] = data.transactions.height
    night = benchmark.pedantic(points_stage, args=(data,), rounds=3, iterations=1, warmup_rounds=0)
    persons = night.state.persons
    assert persons["granted_yen"].max() <= CFG.cap_per_person_yen
    assert int(night.grants["points_delta_yen"].sum()) == int(persons["granted_yen"].sum()) > 0
    assert night.grants.filter(pl.col("reason") == "clawback").height > 0


# ---- the cap computation: kernel against pure Polars --------------------------------------------


class Events(NamedTuple):
    """One night's events in kernel order, and the slots they concern (as points_night builds)."""

    events: pl.DataFrame  # person, is_refund, amount, slot, room
    slots: pl.DataFrame  # slot, net_in, first_in, current_in


@functools.cache
def night_events(n: int) -> Events:
    """The events of a first night over the synthetic data (every qualifying transaction and
    the refunds of those), with half the persons starting from an earlier night's grants."""
    data = synthetic_inputs(n)
    rng = np.random.default_rng(SEED + 1)
    tx = data.transactions.join(data.wallets, on="wallet_id").join(data.services.rename({"kind": "service_kind"}),
                                                                    on="service_id")
    earning = tx.filter(pl.col("kind") == pl.col("service_kind").replace({"prepaid": "charge", "postpaid": "purchase"}))
    refunds = tx.filter(pl.col("refund_of").is_in(earning["transaction_id"].implode()))
    events = (
        pl.concat([earning.with_columns(slot_id=pl.col("transaction_id")),
                   refunds.with_columns(slot_id=pl.col("refund_of"))])
        .sort("wallet_id", "occurred_at", "transaction_id")
    )
    # slots as points_night lays them out: a grant's slot is its own position
    events = events.with_row_index("slot")
    grant_slot = events.filter(pl.col("kind") != "refund").select(pl.col("transaction_id").alias("slot_id"),
                                                                  pl.col("slot").alias("grant_slot"))
    events = events.join(grant_slot, on="slot_id", maintain_order="left").with_columns(slot=pl.col("grant_slot"))
    slots = events.select("slot")
    granted_before = rng.integers(0, 5_001, data.wallets.height) * (rng.random(data.wallets.height) < 0.5)
    events = events.select(
        pl.col("wallet_id").alias("person"),
        (pl.col("kind") == "refund").alias("is_refund"),
        pl.col("amount_yen").alias("amount"),
        pl.col("slot").cast(pl.Int64),
        (CFG.cap_per_person_yen - pl.lit(pl.Series(granted_before)).gather(pl.col("wallet_id") - 1)).alias("room"),
    )
    zero = np.zeros(slots.height, dtype=np.int64)
    return Events(events, pl.DataFrame({"slot": np.arange(slots.height, dtype=np.int64), "net_in": zero,
                                        "first_in": zero, "current_in": zero}))


def capped_point_changes_kernel(night: Events, rate: int) -> np.ndarray:
    e, s = night.events, night.slots
    change, *_ = kernels.capped_point_changes(
        e["person"].to_numpy(), e["is_refund"].to_numpy(), e["amount"].to_numpy(), e["slot"].to_numpy(),
        e["room"].to_numpy(), s["net_in"].to_numpy(), s["first_in"].to_numpy(), s["current_in"].to_numpy(), rate)
    return change


PERSON_STRIDE = 1 << 36  # > twice any person's running total: segments a global cum_max


def capped_point_changes_polars(night: Events, rate: int, cap: int, max_rounds: int = 100) -> tuple[np.ndarray, int]:
    """The best pure-Polars formulation found: a fixed point of vectorised passes.

    Without refunds the cap is `cum_sum` then clip. A clawback frees room, so the running total
    granted is a walk with an upper barrier at the cap, Y_i = min(Y_{i−1} + d_i, cap), whose
    closed form (the Skorokhod reflection) is X_i − max(0, max_{k≤i} X_k − cap) with X the plain
    running sum: one cum_sum and one cum_max per person (done globally: events are sorted by
    person, and adding person_rank × PERSON_STRIDE makes one global cum_max restart at every
    person, 3× faster than `.over("person")`). But the step d_i of a refund is minus its
    clawback, which depends on min(rate × net, first points), and the first points depend on
    the barrier. So: (1) guess every first grant (full points); (2) compute every clawback from
    the guesses; (3) reflect, giving new first grants; repeat until nothing changes. Each round
    fixes at least the earliest wrong event of every person, so it ends; on this data it takes
    a handful of rounds. What it cannot do: a person starting above the cap (after a lowered
    cap the reflection would grant negative points); a round bound better than the longest
    chain of dependent refunds of one person; and it costs a full pass per round.
    Returns (change per event, rounds).
    """
    e = night.events.with_columns(
        full=rate * pl.col("amount") // 100,
        start=(cap - pl.col("room")),
        is_first_event=pl.col("person") != pl.col("person").shift(1, fill_value=-1),
    ).with_columns(offset=pl.col("is_first_event").cum_sum().cast(pl.Int64) * PERSON_STRIDE)
    slots = night.slots
    grant_at = e.with_row_index("i").filter(~pl.col("is_refund")).select("slot", pl.col("amount").alias("base_net"))
    slot_base = slots.join(grant_at, on="slot", how="left").select(
        "slot", pl.coalesce("base_net", "net_in").alias("base_net"),
        pl.col("base_net").is_not_null().alias("is_new"), "first_in", "current_in")
    is_refund = e["is_refund"]
    refund_rows = e.with_row_index("i").filter(pl.col("is_refund")).select("i", "slot", "amount")
    refunds = (
        refund_rows.join(slot_base, on="slot", maintain_order="left")
        .sort("slot", "i")
        .with_columns(net_after=pl.col("base_net") - pl.col("amount").cum_sum().over("slot"),
                      is_first_refund=pl.col("slot") != pl.col("slot").shift(1, fill_value=-1))
    )
    first = slot_base.select(pl.when(pl.col("is_new")).then(0).otherwise(pl.col("first_in")).alias("first"))["first"]
    new_first_positions = e.with_row_index("i").filter(~pl.col("is_refund"))
    first = first.scatter(new_first_positions["slot"].to_numpy(), new_first_positions["full"].to_numpy())
    refund_positions = refunds["i"].to_numpy()
    for rounds in range(1, max_rounds + 1):
        claws = refunds.with_columns(first=first.gather(refunds["slot"])).with_columns(
            kept=pl.min_horizontal(rate * pl.col("net_after") // 100, pl.col("first"))
        ).select(
            pl.when(pl.col("is_first_refund"))
            .then(pl.when(pl.col("is_new")).then(pl.col("first")).otherwise(pl.col("current_in")))
            .otherwise(pl.col("kept").shift(1))
            - pl.col("kept")
        ).to_series()
        step = e["full"].clone().scatter(refund_positions, -claws)  # scatter writes in place
        walk = e.with_columns(step=step).with_columns(
            x=pl.col("start") + pl.col("step").cum_sum() - pl.col("step").cum_sum().filter(pl.col("is_first_event"))
            .gather(pl.col("is_first_event").cum_sum() - 1) + pl.col("step").filter(pl.col("is_first_event"))
            .gather(pl.col("is_first_event").cum_sum() - 1)
        ).with_columns(
            y=pl.col("x") - ((pl.col("x") - cap).clip(lower_bound=0) + pl.col("offset")).cum_max() + pl.col("offset")
        ).with_columns(
            change=pl.when(pl.col("is_first_event")).then(pl.col("y") - pl.col("start"))
            .otherwise(pl.col("y") - pl.col("y").shift(1))
        )
        change = walk["change"]
        grants = change.filter(~is_refund)
        new_first = first.clone().scatter(new_first_positions["slot"].to_numpy(), grants.to_numpy())
        if new_first.equals(first):
            return change.to_numpy(), rounds
        first = new_first
    msg = f"no fixed point after {max_rounds} rounds"
    raise RuntimeError(msg)


@pytest.mark.parametrize("n", [1_000_000, pytest.param(10_000_000, marks=pytest.mark.slow)])
def test_cap_kernel(benchmark, n: int) -> None:
    night = night_events(n)
    benchmark.group = f"points cap|{n}"
    change = benchmark(capped_point_changes_kernel, night, CFG.rate_percent)
    assert (change < 0).any() and change.max() <= CFG.cap_per_person_yen


@pytest.mark.parametrize("n", [1_000_000, pytest.param(10_000_000, marks=pytest.mark.slow)])
def test_cap_polars(benchmark, n: int) -> None:
    night = night_events(n)
    benchmark.group = f"points cap|{n}"
    change, rounds = benchmark.pedantic(capped_point_changes_polars, args=(night, CFG.rate_percent,
                                                                           CFG.cap_per_person_yen),
                                        rounds=3, iterations=1)
    benchmark.extra_info["rounds"] = rounds
    np.testing.assert_array_equal(change, capped_point_changes_kernel(night, CFG.rate_percent))
