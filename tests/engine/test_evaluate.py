"""evaluate.paid_once: who counts as owed exactly one payment."""

from __future__ import annotations

import polars as pl

from engine import evaluate


def frames(statuses: dict[int, str], payouts: list[int], holds: list[tuple[int, str]], truth: list[tuple[str, int]]):
    return (
        pl.DataFrame(truth, schema={"fault": pl.String, "household_id": pl.Int64}, orient="row"),
        pl.DataFrame(holds, schema={"household_id": pl.Int64, "reason": pl.String}, orient="row"),
        pl.DataFrame({"household_id": list(statuses), "status": list(statuses.values())},
                     schema={"household_id": pl.Int64, "status": pl.String}),
        pl.DataFrame({"household_id": payouts}, schema={"household_id": pl.Int64}),
    )


TWICE = "duplicate_application_same_account"


def test_paid_once_counts_each_household_that_applied_twice() -> None:
    truth, holds, households, payouts = frames(
        {1: "paid", 2: "paid", 3: "awaiting", 4: "paid"}, payouts=[1, 2, 2, 4], holds=[],
        truth=[(TWICE, 1), (TWICE, 1), (TWICE, 2), (TWICE, 3)])
    row = evaluate.paid_once(truth, holds, households, payouts)
    # 1 paid once; 2 paid twice (a miss); 3 not paid (a miss); 4 applied once (not scored)
    assert (row["truth"], row["flagged"], row["true_positives"]) == (3, 1, 1)


def test_a_rightful_hold_is_not_a_miss_and_a_wrong_one_is() -> None:
    truth, holds, households, payouts = frames(
        {1: "paid", 2: "held", 3: "held"}, payouts=[1],
        holds=[(2, "fuzzy_identity"), (3, "shared_account")],
        truth=[(TWICE, 1), (TWICE, 2), (TWICE, 3), ("coincidental_namesake", 2)])
    row = evaluate.paid_once(truth, holds, households, payouts)
    # 2 is rightly held (its namesake is in the truth); 3 was held for no planted reason
    assert (row["truth"], row["flagged"], row["true_positives"]) == (2, 1, 1)
    assert row["recall"] == 0.5
