"""engine/payout.py: the application summary's single-application rows against the group-by."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from engine import payout
from engine.ingest import ROW


def random_applications(n_households: int, seed: int) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Households with 1–4 applications (most with one), applicants who are the payee, the
    registered head, someone else or unknown, both channels, accounts repeated, missing fields;
    some households without a payee row or without a registered head."""
    rng = np.random.default_rng(seed)
    per = rng.choice([1, 2, 3, 4], size=n_households, p=[0.7, 0.15, 0.1, 0.05])
    household = np.repeat(np.arange(1, n_households + 1) * 7, per)
    n = len(household)
    payee, head = 1_000 + household, 2_000 + household
    who = rng.integers(0, 4, n)
    applicant = np.where(who == 0, payee, np.where(who == 1, head, 3_000 + rng.integers(0, 50, n)))

    def some_null(values: np.ndarray, share: float) -> list:
        return [None if rng.random() < share else v.item() for v in values]

    applications = pl.DataFrame({
        ROW: np.arange(n, dtype=np.int64),
        "application_id": rng.permutation(n).astype(np.int64) + 10_000,
        "household_id": household,
        "applicant_my_number": pl.Series(some_null(applicant, 0.05), dtype=pl.Int64),
        "channel": pl.Series(some_null(np.where(rng.random(n) < 0.5, "online", "mail"), 0.02), dtype=pl.String),
        "received_on": [date(2020, 5, 1) + timedelta(days=int(d)) for d in rng.integers(0, 5, n)],
        "bank_code": pl.Series(some_null(np.where(rng.random(n) < 0.5, "0005", "0001"), 0.03), dtype=pl.String),
        "branch_code": "001",
        "account_type": "1",
        "account_number": pl.Series(some_null(rng.integers(1, 4, n).astype(str), 0.03), dtype=pl.String),
        "holder_name_kana": pl.Series(some_null(np.where(rng.random(n) < 0.5, "ﾔﾏﾀﾞ ﾀﾛｳ", "ｻﾄｳ ﾊﾅｺ"), 0.03),
                                      dtype=pl.String),
    })
    households = np.arange(1, n_households + 1) * 7
    has_payee = rng.random(n_households) < 0.9
    payees = pl.DataFrame({
        "household_id": households[has_payee],
        "payee_my_number": 1_000 + households[has_payee],
        "registered_head_my_number": pl.Series(some_null(2_000 + households[has_payee], 0.1), dtype=pl.Int64),
    })
    return applications.lazy(), payees.lazy()


def test_the_summary_equals_the_group_by_over_every_household() -> None:
    for seed in range(3):
        applications, payees = random_applications(3_000, seed)
        summary = payout.application_summary(applications, payees).collect()
        expected = payout.summarised(applications, payees).collect().sort("household_id")
        assert summary.schema == expected.schema
        assert summary.equals(expected), seed
        single = summary.filter(pl.col("applications") == 1)
        # the sample reaches every branch of a single application's row
        assert single.height > 1_500
        assert single["application_account_list"].eq("").any()  # an account with a missing field
        assert single["has_online_not_head"].any() and not single["has_online_not_head"].all()
        assert single["is_application_by_registered_head"].any()
