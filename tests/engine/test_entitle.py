"""entitle.payees and households_with_payees against the sort they replace (a slow twin): the
payee is the first living eligible member by (is_head first, birth_date, row), the registered
head the head with the lowest My Number."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from engine import entitle
from engine.config import BenefitConfig
from engine.ingest import ROW

BENEFIT = BenefitConfig()


def sorted_payees(members: pl.LazyFrame) -> pl.LazyFrame:
    """The payee rule as a sort of the members and a first per household (the reference)."""
    registered_heads = (
        members.filter(pl.col("is_head"))
        .sort("household_id", "my_number")
        .group_by("household_id", maintain_order=True)
        .agg(
            pl.col("my_number").first().alias("registered_head_my_number"),
            pl.col("family_name_kana").first().alias("registered_head_family_name_kana"),
            pl.col("given_name_kana").first().alias("registered_head_given_name_kana"),
        )
    )
    return (
        members.filter(pl.col("is_eligible") & pl.col("is_living"))
        .sort(["household_id", "is_head", "birth_date", ROW], descending=[False, True, False, False])
        .group_by("household_id", maintain_order=True)
        .agg(
            pl.col("my_number").first().alias("payee_my_number"),
            pl.col("person_key").first().alias("payee_person_key"),
            pl.col("family_name_kana").first().alias("payee_family_name_kana"),
            pl.col("given_name_kana").first().alias("payee_given_name_kana"),
        )
        .join(registered_heads, on="household_id", how="left")
    )


def random_members(n: int, seed: int) -> pl.DataFrame:
    """Members with many ties: households of 1–6, several or no heads, twins (one birth date
    shared in a household), dead and ineligible members, rows not in household order."""
    rng = np.random.default_rng(seed)
    household = np.sort(rng.integers(0, n // 3, n))
    births = rng.integers(-25_000, 19_000, n // 3)  # days since 1970: 1901–2022
    birth = births[household] + rng.choice([0, 0, 0, 1, 365 * 30], n)  # often the same day in a household
    rows = rng.permutation(n)
    my_number = rng.choice(10**11, n, replace=False) + 10**11
    return pl.DataFrame({
        "household_id": household,
        "my_number": my_number,
        "person_key": np.arange(n),
        "family_name_kana": [f"ﾔﾏﾀﾞ{i % 97}" for i in range(n)],
        "given_name_kana": [f"ﾀﾛｳ{i}" for i in range(n)],
        "is_head": rng.random(n) < 0.45,
        "birth_date": pl.Series(birth, dtype=pl.Int32).cast(pl.Date),
        ROW: rows.astype(np.uint32),
        "municipality_code": rng.choice(["131016", "271004", "011002"], n),
        "is_eligible": rng.random(n) < 0.9,
        "is_living": rng.random(n) < 0.93,
        "is_declined": rng.random(n) < 0.05,
    }).with_columns(is_counted=pl.col("is_eligible") & ~pl.col("is_declined"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_payees_pick_what_the_sort_picks(seed):
    members = random_members(60_000, seed)
    expected = sorted_payees(members.lazy()).collect().sort("household_id")
    got = entitle.payees(members.lazy()).collect().sort("household_id")
    assert got.height == expected.height > 10_000
    assert got.select(expected.columns).equals(expected)
    # the ties the order must break are there: households with two living eligible non-heads
    # born the same day, and households with more than one head
    twins = (members.filter(pl.col("is_eligible") & pl.col("is_living") & ~pl.col("is_head"))
             .group_by("household_id", "birth_date").len().filter(pl.col("len") > 1).height)
    heads = members.filter("is_head").group_by("household_id").len().filter(pl.col("len") > 1).height
    assert twins > 100 and heads > 1_000


def test_households_with_payees_are_households_beside_payees():
    members = random_members(60_000, 3).lazy()
    both = entitle.households_with_payees(members, BENEFIT).collect().sort("household_id")
    households = entitle.household_entitlements(members, BENEFIT).collect().sort("household_id")
    assert both.drop(entitle.PAYEE_COLUMNS).select(households.columns).equals(households)
    payees = sorted_payees(members).collect().sort("household_id")
    with_payee = both.filter(pl.col("living_eligible_members") > 0).select(payees.columns)
    assert with_payee.equals(payees)
    # a household without a living eligible member has no payee, and the other way round
    assert both.filter(pl.col("living_eligible_members") == 0)["payee_my_number"].null_count() == \
        both.filter(pl.col("living_eligible_members") == 0).height > 0
    assert with_payee["payee_my_number"].null_count() == 0


def test_the_payee_order_is_head_then_eldest_then_row():
    day = date(1980, 1, 1)
    members = pl.DataFrame({
        "household_id": [1, 1, 1, 2, 2, 2, 3, 3],
        "my_number": [11, 12, 13, 21, 22, 23, 31, 32],
        "person_key": [1, 2, 3, 4, 5, 6, 7, 8],
        "family_name_kana": ["A"] * 8,
        "given_name_kana": ["a", "b", "c", "d", "e", "f", "g", "h"],
        "is_head": [False, True, False, False, False, True, True, False],
        "birth_date": [date(1950, 1, 1), day, date(1940, 1, 1), day, day, day, day, date(2000, 1, 1)],
        ROW: [5, 3, 4, 9, 8, 7, 1, 2],
        "is_eligible": [True, True, True, True, True, True, True, True],
        "is_living": [True, True, True, True, True, False, False, True],
    })
    got = entitle.payees(members.lazy()).collect().sort("household_id")
    # 1: the living head; 2: the head died, the two born the same day: the earlier row; 3: the
    # head died, the other member; registered heads: the head (or none)
    assert got["payee_my_number"].to_list() == [12, 22, 32]
    assert got["registered_head_my_number"].to_list() == [12, 23, 31]
    assert got["registered_head_given_name_kana"].to_list() == ["b", "f", "g"]
