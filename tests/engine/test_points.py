"""Points stage: one tiny literal night per rule, then generated samples over several nights
checked to the yen against tests/points_reference.py (an independent pure-Python engine)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from engine import point_checks, points, settlement
from engine.config import MynapointConfig
from points_reference import PointsReference

CFG = MynapointConfig()
RUN = date(2022, 1, 31)
PREPAID, POSTPAID = 1, 2
SERVICES = pl.LazyFrame({"service_id": [PREPAID, POSTPAID], "name": ["Pre", "Post"], "kind": ["prepaid", "postpaid"]})
ALICE, BOB, CAROL = 111_111_111_118, 222_222_222_224, 333_333_333_331  # My Numbers (never in outputs)
PERSONS = pl.LazyFrame({"my_number": [ALICE, BOB, CAROL], "person_key": [1, 2, 3],
                        "died_on": [None, None, date(2020, 10, 10)]}, schema_overrides={"died_on": pl.Date})
# wallet 10: Alice on a prepaid service; 20: Bob postpaid; 30: Carol prepaid (dies 2020-10-10)
WALLETS = pl.LazyFrame({
    "wallet_id": [10, 20, 30], "my_number": [ALICE, BOB, CAROL], "service_id": [PREPAID, POSTPAID, PREPAID],
    "registered_on": [date(2020, 10, 1), date(2020, 7, 1), date(2020, 7, 1)],
})
NO_HOLDS = pl.DataFrame(schema={"wallet_id": pl.Int64})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def transactions(*rows) -> pl.LazyFrame:
    """rows: (transaction_id, wallet_id, occurred_at, kind, amount_yen[, refund_of])."""
    rows = [(*r, None) if len(r) == 5 else r for r in rows]
    return pl.LazyFrame(
        rows, orient="row",
        schema={"transaction_id": pl.Int64, "wallet_id": pl.Int64, "occurred_at": pl.Datetime("us"),
                "kind": pl.String, "amount_yen": pl.Int64, "refund_of": pl.Int64},
    )


def night(tx: pl.LazyFrame, run_date: date = RUN, state: points.PointsState | None = None,
          holds: pl.DataFrame = NO_HOLDS, wallets: pl.LazyFrame = WALLETS,
          cfg: MynapointConfig = CFG) -> points.PointsNight:
    result = points.points_night(tx, wallets, SERVICES, PERSONS, state or points.empty_points_state(), holds,
                                 cfg, run_date)
    return result._replace(state=points.PointsState(*(f.collect().lazy() for f in result.state)))


def changes(result: points.PointsNight) -> dict[int, tuple[int, str]]:
    return {t: (d, r) for t, d, r in result.grants.select("transaction_id", "points_delta_yen", "reason").iter_rows()}


def ignored(result: points.PointsNight) -> dict[int, str]:
    return dict(result.ignored.select("transaction_id", "reason").iter_rows())


# ---- rules, one literal night each -------------------------------------------------------------


def test_window_edges_are_inclusive_to_the_microsecond() -> None:
    result = night(transactions(
        (1, 20, at("2020-08-31 23:59:59.999999"), "purchase", 1_000),
        (2, 20, at("2020-09-01 00:00:00"), "purchase", 1_000),
        (3, 20, at("2021-12-31 23:59:59.999999"), "purchase", 1_000),
        (4, 20, at("2022-01-01 00:00:00"), "purchase", 1_000),
    ))
    assert changes(result) == {2: (250, "earned"), 3: (250, "earned")}
    assert ignored(result) == {1: "outside_window", 4: "outside_window"}


def test_registration_day_counts_the_day_before_does_not() -> None:
    result = night(transactions(
        (1, 10, at("2020-09-30 23:59:59"), "charge", 4_000),
        (2, 10, at("2020-10-01 00:00:01"), "charge", 4_000),
    ))
    assert changes(result) == {2: (1_000, "earned")}
    assert ignored(result) == {1: "before_registration"}


def test_prepaid_earns_on_charges_postpaid_on_purchases() -> None:
    result = night(transactions(
        (1, 10, at("2020-11-01 10:00"), "charge", 1_001),
        (2, 10, at("2020-11-01 11:00"), "purchase", 1_000),
        (3, 20, at("2020-11-01 10:00"), "purchase", 999),
        (4, 20, at("2020-11-01 11:00"), "charge", 1_000),
    ))
    assert changes(result) == {1: (250, "earned"), 3: (249, "earned")}  # floor(25% × amount)
    assert ignored(result) == {2: "not_earning_kind", 4: "not_earning_kind"}


def test_grants_stop_after_death() -> None:
    result = night(transactions(
        (1, 30, at("2020-10-10 23:00"), "charge", 2_000),
        (2, 30, at("2020-10-11 00:00"), "charge", 2_000),
    ))
    assert changes(result) == {1: (500, "earned")}
    assert ignored(result) == {2: "after_death"}


def test_cap_is_crossed_mid_transaction_then_nothing_more() -> None:
    result = night(transactions(*[(i, 20, at(f"2020-11-0{i} 10:00"), "purchase", 8_000) for i in range(1, 5)]))
    assert changes(result) == {1: (2_000, "earned"), 2: (2_000, "earned"), 3: (1_000, "capped"), 4: (0, "capped")}
    assert result.state.persons.collect().rows() == [(2, 5_000)]


def test_cap_is_per_person_across_wallets() -> None:
    wallets = pl.concat([WALLETS, pl.LazyFrame({"wallet_id": [11], "my_number": [ALICE], "service_id": [POSTPAID],
                                                "registered_on": [date(2020, 10, 1)]})])
    result = night(transactions(
        (1, 10, at("2020-11-01 10:00"), "charge", 12_000),
        (2, 11, at("2020-11-01 11:00"), "purchase", 12_000),
    ), wallets=wallets)
    assert changes(result) == {1: (3_000, "earned"), 2: (2_000, "capped")}


def test_partial_refund_claws_back_the_difference() -> None:
    result = night(transactions(
        (1, 20, at("2020-11-01 10:00"), "purchase", 10_000),
        (2, 20, at("2020-11-02 10:00"), "refund", 4_000, 1),
    ))
    assert changes(result) == {1: (2_500, "earned"), 2: (-1_000, "clawback")}
    row = result.state.transactions.collect().row(0, named=True)
    assert (row["net_amount_yen"], row["points_first_yen"], row["points_current_yen"]) == (6_000, 2_500, 1_500)


def test_repeated_refunds_each_claw_back_their_part() -> None:
    result = night(transactions(
        (1, 20, at("2020-11-01 10:00"), "purchase", 10_000),
        (2, 20, at("2020-11-02 10:00"), "refund", 1_000, 1),
        (3, 20, at("2020-11-03 10:00"), "refund", 1_002, 1),
        (4, 20, at("2020-11-04 10:00"), "refund", 7_998, 1),
    ))
    # net 9,000 → 2,250; 7,998 → 1,999; 0 → 0
    assert changes(result) == {1: (2_500, "earned"), 2: (-250, "clawback"), 3: (-251, "clawback"),
                               4: (-1_999, "clawback")}


def test_refund_after_the_cap_frees_room_for_later_transactions_only() -> None:
    result = night(transactions(
        (1, 20, at("2020-11-01 10:00"), "purchase", 20_000),
        (2, 20, at("2020-11-02 10:00"), "purchase", 4_000),  # cap reached: 0, and stays 0
        (3, 20, at("2020-11-03 10:00"), "refund", 8_000, 1),  # net 12,000 → 3,000: ¥2,000 freed
        (4, 20, at("2020-11-04 10:00"), "purchase", 4_000),
        (5, 20, at("2020-11-05 10:00"), "purchase", 40_000),
    ))
    assert changes(result) == {1: (5_000, "earned"), 2: (0, "capped"), 3: (-2_000, "clawback"),
                               4: (1_000, "earned"), 5: (1_000, "capped")}


def test_refund_of_a_capped_transaction_keeps_its_points_while_within_them() -> None:
    result = night(transactions(
        (1, 20, at("2020-11-01 10:00"), "purchase", 16_000),  # 4,000
        (2, 20, at("2020-11-02 10:00"), "purchase", 8_000),  # 2,000 due, 1,000 granted (cap)
        (3, 20, at("2020-11-03 10:00"), "refund", 4_000, 2),  # net 4,000 → min(1,000, 1,000)
        (4, 20, at("2020-11-04 10:00"), "refund", 2_000, 2),  # net 2,000 → min(500, 1,000)
    ))
    assert changes(result) == {1: (4_000, "earned"), 2: (1_000, "capped"), 3: (0, "refund_kept"),
                               4: (-500, "clawback")}


def test_refund_of_a_non_qualifying_transaction_claws_back_nothing() -> None:
    result = night(transactions(
        (1, 20, at("2020-08-01 10:00"), "purchase", 10_000),
        (2, 20, at("2020-09-02 10:00"), "refund", 10_000, 1),
    ))
    assert changes(result) == {}
    assert ignored(result) == {1: "outside_window", 2: "outside_window"}


def test_refund_arriving_on_a_later_night_claws_back_that_night() -> None:
    tx = transactions(
        (1, 20, at("2020-11-01 10:00"), "purchase", 10_000),
        (2, 20, at("2020-12-15 10:00"), "refund", 10_000, 1),
        (3, 20, at("2020-12-20 10:00"), "purchase", 2_000),
    )
    first = night(tx, date(2020, 11, 30))
    assert changes(first) == {1: (2_500, "earned")}
    second = night(tx, date(2020, 12, 31), state=first.state)
    assert changes(second) == {2: (-2_500, "clawback"), 3: (500, "earned")}
    assert second.state.persons.collect().rows() == [(2, 500)]
    assert second.state.refunds.collect()["applied_on"].to_list() == [date(2020, 12, 31)]


def test_rerun_of_a_night_grants_nothing_twice() -> None:
    tx = transactions(
        (1, 20, at("2020-11-01 10:00"), "purchase", 10_000),
        (2, 20, at("2020-12-15 10:00"), "refund", 5_000, 1),
        (3, 10, at("2020-12-20 10:00"), "charge", 2_000),
    )
    first = night(tx, date(2020, 11, 30))
    second = night(tx, date(2020, 12, 31), state=first.state)
    again = night(tx, date(2020, 12, 31), state=first.state)  # killed before the state was kept
    assert_frame_equal(again.grants, second.grants)
    assert_frame_equal(again.state.transactions.collect(), second.state.transactions.collect())
    after = night(tx, date(2020, 12, 31), state=second.state)  # killed after
    assert after.grants.height == 0
    assert_frame_equal(after.state.persons.collect(), second.state.persons.collect())


def test_held_wallet_waits_and_is_granted_once_released() -> None:
    tx = transactions(
        (1, 20, at("2020-11-01 10:00"), "purchase", 4_000),
        (2, 20, at("2020-11-05 10:00"), "refund", 1_000, 1),
        (3, 20, at("2020-11-10 10:00"), "purchase", 4_000),
    )
    holds = pl.DataFrame({"wallet_id": [20]})
    held = night(tx, date(2020, 11, 30), holds=holds)
    assert changes(held) == {}
    assert ignored(held) == {1: "held_wallet", 2: "held_wallet", 3: "held_wallet"}
    assert held.state.transactions.collect().height == 0
    released = night(tx, date(2020, 12, 31), state=held.state)
    assert changes(released) == {1: (1_000, "earned"), 2: (-250, "clawback"), 3: (1_000, "earned")}


def test_refund_of_a_transaction_granted_before_the_hold_still_claws_back() -> None:
    tx = transactions(
        (1, 20, at("2020-11-01 10:00"), "purchase", 4_000),
        (2, 20, at("2020-12-05 10:00"), "refund", 4_000, 1),
        (3, 20, at("2020-12-06 10:00"), "purchase", 4_000),
    )
    first = night(tx, date(2020, 11, 30))
    second = night(tx, date(2020, 12, 31), state=first.state, holds=pl.DataFrame({"wallet_id": [20]}))
    assert changes(second) == {2: (-1_000, "clawback")}
    assert ignored(second) == {3: "held_wallet"}


def test_the_settlement_nets_each_wallet_and_totals_split_grants_and_clawbacks() -> None:
    tx = transactions(
        (1, 20, at("2020-11-01 10:00"), "purchase", 4_000),
        (2, 20, at("2020-11-05 10:00"), "refund", 4_000, 1),
        (3, 10, at("2020-11-10 10:00"), "charge", 3_000),
    )
    result = night(tx, date(2020, 11, 30))
    assert result.settlement.rows() == [(PREPAID, 10, 750, 0, 750)]  # wallet 20 nets to 0
    assert result.totals.rows() == [(PREPAID, 750, 0, 750, 1), (POSTPAID, 1_000, 1_000, 0, 0)]


def test_a_different_rate_and_cap_come_from_the_config() -> None:
    cfg = MynapointConfig(rate_percent=10, cap_per_person_yen=300)
    result = night(transactions((1, 20, at("2020-11-01 10:00"), "purchase", 2_000),
                                (2, 20, at("2020-11-02 10:00"), "purchase", 2_000)), cfg=cfg)
    assert changes(result) == {1: (200, "earned"), 2: (100, "capped")}


# ---- validation ------------------------------------------------------------------------------------


def test_checked_transactions_reject_with_reasons_and_details_without_my_numbers() -> None:
    tx = transactions(
        (1, 20, at("2020-11-01 10:00"), "purchase", 10_000),
        (1, 20, at("2020-11-01 11:00"), "purchase", 5_000),  # duplicate_key
        (2, 20, at("2020-11-01 12:00"), "purchase", 0),  # amount_not_positive
        (3, 20, at("2020-11-01 13:00"), "gift", 100),  # invalid_value
        (4, 99, at("2020-11-01 14:00"), "purchase", 100),  # unknown_wallet
        (5, 20, at("2020-11-02 10:00"), "refund", 100),  # missing_value: no refund_of
        (6, 20, at("2020-11-02 10:00"), "refund", 100, 777),  # unknown_refunded_transaction
        (7, 10, at("2020-11-02 10:00"), "refund", 100, 1),  # another wallet's transaction
        (8, 20, at("2020-11-03 10:00"), "refund", 6_000, 1),
        (9, 20, at("2020-11-04 10:00"), "refund", 6_000, 1),  # refunds reach 12,000 > 10,000
        (10, 20, at("2020-10-31 10:00"), "refund", 10, 1),  # before the transaction
        (11, 20, at("2022-02-01 00:00"), "purchase", 100),  # pending on RUN
        (12, 20, None, "purchase", 100),  # missing_value
    )
    checked = point_checks.checked_transactions(tx, WALLETS, RUN).collect()
    assert checked.select("transaction_id", "reject_reason").rows() == [
        (1, None), (1, "duplicate_key"), (2, "amount_not_positive"), (3, "invalid_value"),
        (4, "unknown_wallet"), (5, "missing_value"), (6, "unknown_refunded_transaction"),
        (7, "unknown_refunded_transaction"), (8, None), (9, "refund_exceeds_amount"), (10, "impossible_date"),
        (11, None), (12, "missing_value"),
    ]
    assert checked["is_pending"].to_list() == [False] * 11 + [True, False]
    details = dict(zip(checked["transaction_id"], checked["detail"], strict=True))
    assert details[9] == "refunds of transaction 1 reach ¥12000 of its ¥10000"
    assert details[12] == "null in occurred_at"
    assert details[5] == "refund without refund_of"
    text = " ".join(checked["detail"].drop_nulls())
    assert all(str(n) not in text for n in (ALICE, BOB, CAROL))
    assert set(checked["reject_reason"].drop_nulls()) <= set(point_checks.TRANSACTION_REJECT_REASONS)
    # rejected and pending rows earn nothing
    result = night(tx)
    assert changes(result) == {1: (2_500, "earned"), 8: (-1_500, "clawback")}


# ---- holds ---------------------------------------------------------------------------------------------


def test_wallet_holds_find_shared_second_wallets_and_refund_cycling() -> None:
    wallets = pl.LazyFrame({
        "wallet_id": [10, 20, 30, 30, 40, 41, 50],
        "my_number": [ALICE, BOB, CAROL, BOB, 444, 444, 555],
        "service_id": [PREPAID] * 7,
        "registered_on": [date(2020, 7, 1)] * 6 + [date(2022, 3, 1)],  # 50: after the run date
    })
    persons = pl.concat([PERSONS, pl.LazyFrame({"my_number": [444, 555], "person_key": [4, 5],
                                                "died_on": [None, None]}, schema_overrides={"died_on": pl.Date})])
    cycling = [(100 + 2 * i, 10, at(f"2020-11-0{i + 1} 10:00"), "charge", 20_000) for i in range(4)] + [
        (101 + 2 * i, 10, at(f"2020-11-0{i + 1} 11:00"), "refund", 20_000, 100 + 2 * i) for i in range(3)]
    clean = [(200, 20, at("2020-11-01 10:00"), "charge", 5_000),  # one cycle only
             (201, 20, at("2020-11-02 10:00"), "refund", 5_000, 200),
             (202, 20, at("2020-11-03 10:00"), "charge", 5_000)]
    tx = point_checks.checked_transactions(transactions(*cycling, *clean), wallets, RUN)
    holds = point_checks.wallet_holds(wallets, tx, persons, RUN)
    assert holds.select("wallet_id", "person_key", "reasons").rows() == [
        (10, 1, ["refund_cycling"]),
        (20, 2, ["second_wallet"]),
        (30, 2, ["shared_wallet", "second_wallet"]),  # same day: the smaller person_key
        (40, 4, ["second_wallet"]),
        (41, 4, ["second_wallet"]),
    ]
    evidence = dict(holds.select("wallet_id", "evidence").iter_rows())
    assert evidence[10] == "3 charge→refund→charge cycles (refunded transactions 100, 102, 104)"
    assert evidence[30] == ("wallet 30 linked by 2 persons (person_keys 2, 3); "
                            "person_key 2 links 2 wallets (20, 30)")
    assert holds["hold_id"].to_list() == ["HP-10", "HP-20", "HP-30", "HP-40", "HP-41"]
    assert all(str(n) not in " ".join(holds["evidence"]) for n in (ALICE, BOB, CAROL))
    fewer = point_checks.wallet_holds(wallets, tx, persons, date(2020, 11, 2))  # two cycles by then
    assert 10 not in fewer["wallet_id"].to_list()
    stricter = point_checks.wallet_holds(wallets, tx, persons, RUN, min_refund_cycles=4)
    assert 10 not in stricter["wallet_id"].to_list()


def test_holds_in_force_drop_the_released_ones_and_keep_the_denied() -> None:
    holds = pl.DataFrame({"hold_id": ["HP-10", "HP-20", "HP-30", "HP-40"], "wallet_id": [10, 20, 30, 40]})
    decisions = pl.DataFrame({
        "hold_id": ["HP-10", "HP-20", "HP-30", "HP-30", "HP-40"],
        "decision": ["release", "deny", "release", "deny", "release"],
        "decided_on": [date(2020, 12, 1), date(2020, 12, 1), date(2020, 11, 1), date(2020, 12, 2), date(2021, 1, 5)],
    })
    assert point_checks.holds_in_force(holds, decisions, date(2020, 12, 31))["wallet_id"].to_list() == [20, 30, 40]
    assert point_checks.holds_in_force(holds, decisions, date(2021, 1, 31))["wallet_id"].to_list() == [20, 30]


# ---- generated samples, several nights, against the reference --------------------------------------

NIGHTS = (date(2020, 10, 31), date(2020, 12, 31), date(2021, 6, 30), date(2021, 12, 31), date(2022, 1, 31))


@pytest.fixture(scope="module", params=[1, 2])
def generated(request, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from pipelines.generate import generate

    out = tmp_path_factory.mktemp(f"points{request.param}")
    generate(20_000, seed=request.param, out=out)
    read = lambda name: pl.read_parquet(out / name / "*.parquet")  # noqa: E731
    residents = read("residents")
    persons = (
        residents.group_by("my_number").agg(pl.col("died_on").min()).sort("my_number")
        .with_row_index("person_key", offset=1).with_columns(pl.col("person_key").cast(pl.Int64))
    )
    return {
        "out": out, "transactions": read("transactions"), "wallets": read("wallets"),
        "services": pl.read_parquet(out / "services.parquet"), "persons": persons,
        "truth": pl.read_parquet(out / "truth" / "*.parquet"),
    }


def persons_as_of(persons: pl.DataFrame, run_date: date) -> pl.LazyFrame:
    return persons.lazy().with_columns(pl.when(pl.col("died_on") <= run_date).then("died_on").alias("died_on"))


def run_night(data: dict, run_date: date, state: points.PointsState) -> tuple[points.PointsNight, pl.DataFrame]:
    wallets = data["wallets"].lazy()
    persons = persons_as_of(data["persons"], run_date)
    checked = point_checks.checked_transactions(data["transactions"].lazy(), wallets, run_date)
    holds = point_checks.wallet_holds(wallets, checked, persons, run_date)
    result = points.points_night(checked, wallets, data["services"].lazy(), persons, state, holds, CFG, run_date)
    return result._replace(state=points.PointsState(*(f.collect().lazy() for f in result.state))), holds


def reference_for(data: dict) -> PointsReference:
    return PointsReference(CFG, data["services"].to_dicts(), data["wallets"].to_dicts(),
                           data["persons"].to_dicts(), data["transactions"].to_dicts())


@pytest.fixture(scope="module")
def nights(generated: dict, tmp_path_factory: pytest.TempPathFactory) -> list[tuple]:
    """(engine night, holds, reference night, state before) for each of NIGHTS in sequence."""
    reference = reference_for(generated)
    state, results = points.empty_points_state(), []
    for run_date in NIGHTS:
        result, holds = run_night(generated, run_date, state)
        results.append((result, holds, reference.night(run_date), state))
        state = result.state
    generated["reference"] = reference
    return results


def test_every_event_matches_the_reference_to_the_yen(nights) -> None:
    for result, _, expected, _ in nights:
        assert changes_of(result) == expected.changes, expected.run_date
        earning = result.ignored.filter(pl.col("kind") != "refund")
        assert dict(earning.select("transaction_id", "reason").iter_rows()) == expected.ignored


def changes_of(result: points.PointsNight) -> dict[int, int]:
    return dict(result.grants.select("transaction_id", "points_delta_yen").iter_rows())


def test_refunds_arriving_on_later_nights_claw_back_there(nights) -> None:
    later = 0
    for result, _, _, state_before in nights[1:]:
        granted_before = state_before.transactions.select("transaction_id").collect()["transaction_id"]
        clawbacks = result.grants.filter((pl.col("reason") == "clawback")
                                         & pl.col("refund_of").is_in(granted_before.implode()))
        later += clawbacks.height
    assert later > 0


def test_holds_match_the_reference(nights) -> None:
    for _, holds, expected, _ in nights:
        assert {w: set(r) for w, r in holds.select("wallet_id", "reasons").iter_rows()} == expected.holds


def test_points_per_person_over_the_nights_equal_the_reference(nights, generated) -> None:
    grants = pl.concat([result.grants for result, *_ in nights])
    per_person = grants.group_by("person_key").agg(pl.col("points_delta_yen").sum())
    expected = {k: v for k, v in generated["reference"].points_per_person().items() if v}
    assert dict(per_person.filter(pl.col("points_delta_yen") != 0).iter_rows()) == expected
    assert sum(expected.values()) > 0 and grants.filter(pl.col("reason") == "clawback").height > 0


def test_no_person_above_the_cap_after_any_night_and_state_is_consistent(nights) -> None:
    for result, *_ in nights:
        persons = result.state.persons.collect().sort("person_key")
        assert persons["granted_yen"].max() <= CFG.cap_per_person_yen
        assert persons["granted_yen"].min() >= 0
        current = result.state.transactions.collect().group_by("person_key").agg(
            pl.col("points_current_yen").sum().alias("granted_yen"))
        assert_frame_equal(current.sort("person_key"), persons.filter(pl.col("person_key").is_in(
            current["person_key"].implode())), check_dtypes=False)
        transactions = result.state.transactions.collect()
        assert transactions["transaction_id"].is_unique().all()
        assert result.state.refunds.collect()["transaction_id"].is_unique().all()
        assert (transactions["points_current_yen"] <= transactions["points_first_yen"]).all()


def test_a_night_run_group_of_persons_by_group_gives_the_same_result(nights, generated) -> None:
    """The memory bound for a night that catches up: one call per group of persons, wallets
    narrowed to the group, each call's state feeding the next."""
    result, _, _, state = nights[2]
    run_date = NIGHTS[2]
    wallets, persons = generated["wallets"].lazy(), persons_as_of(generated["persons"], run_date)
    checked = point_checks.checked_transactions(generated["transactions"].lazy(), wallets, run_date)
    holds = point_checks.wallet_holds(wallets, checked, persons, run_date)
    owners = point_checks.wallet_owners(wallets, persons)
    grants = []
    for group in range(3):
        ids = owners.filter(pl.col("person_key").fill_null(0) % 3 == group).select("wallet_id")
        mine = wallets.join(ids, on="wallet_id", how="semi")
        part = points.points_night(checked, mine, generated["services"].lazy(), persons, state, holds, CFG, run_date)
        grants.append(part.grants)
        state = points.PointsState(*(f.collect().lazy() for f in part.state))
    assert_frame_equal(pl.concat(grants).sort("person_key", "occurred_at", "transaction_id"), result.grants)
    for got, expected in zip(state, result.state, strict=True):
        key = got.collect_schema().names()[0]
        assert_frame_equal(got.collect().sort(key), expected.collect().sort(key))


def test_rerunning_a_night_with_the_state_before_it_gives_identical_grants(nights, generated) -> None:
    result, _, _, state_before = nights[3]
    again, _ = run_night(generated, NIGHTS[3], state_before)
    assert_frame_equal(again.grants, result.grants)
    assert_frame_equal(again.settlement, result.settlement)
    assert_frame_equal(again.state.transactions.collect(), result.state.transactions.collect())
    nothing, _ = run_night(generated, NIGHTS[3], result.state)
    assert nothing.grants.height == 0


def test_planted_points_faults_are_held_or_ignored_with_their_reason(nights, generated) -> None:
    truth = generated["truth"]
    _, holds, _, _ = nights[-1]
    held = {w: set(r) for w, r in holds.select("wallet_id", "reasons").iter_rows()}
    for fault in ("second_wallet", "refund_cycling"):
        planted = truth.filter(pl.col("fault") == fault)["wallet_id"].to_list()
        assert planted and all(fault in held.get(w, ()) for w in planted), fault
    flagged_cycling = {w for w, r in held.items() if "refund_cycling" in r}
    assert flagged_cycling == set(truth.filter(pl.col("fault") == "refund_cycling")["wallet_id"])
    result = nights[-1][0]
    reasons = dict(result.ignored.select("transaction_id", "reason").iter_rows())
    for fault, reason in (("transaction_before_registration", "before_registration"),
                          ("transaction_outside_window", "outside_window")):
        planted = truth.filter(pl.col("fault") == fault).join(generated["transactions"], on="transaction_id")
        seen = planted.filter(pl.col("occurred_at") < datetime(2022, 2, 1))["transaction_id"].to_list()
        assert seen and all(reasons[t] == reason for t in seen), fault


def test_files_and_ledger_reconcile_with_the_totals_every_night(nights, generated, tmp_path: Path) -> None:
    for result, _, expected, _ in nights:
        run_date = expected.run_date
        files = settlement.write_settlement_files(result.settlement, generated["services"], tmp_path, run_date)
        ledger = settlement.points_ledger_entries(result.grants.lazy(), run_date)
        figures = settlement.points_reconciliation(result.totals, files, ledger)
        assert figures["points_net_yen"] == int(result.grants["points_delta_yen"].sum())
        assert figures["points_files_records"] == result.settlement.height
