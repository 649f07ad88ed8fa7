"""validate.later_copies against its twin, Polars' ~pl.struct(keys).is_first_distinct()."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from engine import validate


def frame(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    base = pl.DataFrame({
        "id": rng.integers(0, n // 3, n),  # many repeats
        "name": pl.Series(rng.choice(["ｻﾄｳ", "ｽｽﾞｷ", "ﾀｶﾊｼ", None], n).tolist(), dtype=pl.String),
        "day": pl.Series(rng.integers(0, 40, n)).cast(pl.Date),
    })
    # exact copies of some rows, and nulls in the keys
    return pl.concat([base, base.sample(n // 10, seed=seed), base.slice(0, 5).with_columns(pl.lit(None).alias("id"))])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("keys", [["id"], ["id", "name"], ["id", "name", "day"]])
def test_later_copies_match_is_first_distinct(keys: list[str], seed: int) -> None:
    data = frame(3_000, seed)
    want = data.select(~pl.struct(keys).is_first_distinct()).to_series()
    got = data.lazy().with_row_index(validate.AT).select(validate.later_copies(data.lazy(), keys)[0]).collect().to_series()
    assert got.to_list() == want.to_list()
    assert 0 < want.sum() < len(want)


def test_candidates_from_fewer_keys_are_compared_on_all_of_them() -> None:
    # rows that agree on the first key set but not on the wider one are candidates, not copies
    data = pl.DataFrame({"id": [1, 1, 2, 1, 2, 3], "name": ["a", "b", "c", "a", "d", "e"]})
    by_id, by_id_and_name = validate.later_copies(data.lazy(), ["id"], ["id", "name"], index="__row")
    got = data.lazy().with_row_index("__row").select(by_id_and_name).collect().to_series().to_list()
    assert got == [False, False, False, True, False, False]
    got = data.lazy().with_row_index("__row").select(by_id).collect().to_series().to_list()
    assert got == [False, True, False, True, True, False]
    unique = pl.DataFrame({"id": [3, 1, 2]})
    assert data.lazy().select(validate.later_copies(unique.lazy(), ["id"])[0]).collect().to_series().to_list() == [False]


def test_residents_duplicate_rules() -> None:
    row = {"my_number": 123456789018, "household_id": 7, "is_head": True, "family_name_kana": "ｻﾄｳ",
           "given_name_kana": "ﾀﾛｳ", "birth_date": date(1980, 1, 1), "sex": "M", "municipality_code": "131016",
           "registered_on": date(2000, 1, 1), "moved_out_on": None, "died_on": None}
    rows = [row, {**row, "given_name_kana": "ﾀﾛ"}, row, {**row, "household_id": 8},
            {**row, "died_on": date(2030, 1, 1)}]  # a death after the run date is not known yet: a copy
    residents = pl.DataFrame(rows).with_row_index("row_number").with_columns(pl.col("row_number").cast(pl.Int64))
    checked = validate.checked_residents(residents.lazy(), date(2021, 12, 31)).collect()
    assert checked["reject_reason"].to_list() == [None, "duplicate_key", "duplicate_row", None, "duplicate_row"]


def _latest_by_window(checked: pl.LazyFrame, key: str, order: str) -> pl.LazyFrame:
    """The rule as a window over every row: its twin (the code before the candidates)."""
    usable = pl.col("reject_reason").is_null() & ~pl.col("is_pending")
    recency = pl.col(order).cast(pl.Int64) * (1 << 40) + pl.col("row_number")
    newest = recency.max().over([key, usable])
    return checked.with_columns(pl.when(usable & (recency != newest)).then(pl.lit("duplicate_key"))
                                .otherwise(pl.col("reject_reason")).alias("reject_reason"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_latest_link_per_person_matches_the_window(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 20_000
    checked = pl.DataFrame({
        "row_number": np.arange(n, dtype=np.int64),
        "my_number": pl.Series(rng.integers(0, n // 2, n)).set(pl.Series(rng.random(n) < 0.02), None),
        "linked_on": pl.Series(rng.integers(18_000, 18_040, n)).cast(pl.Date),  # equal dates: the later row wins
        "reject_reason": pl.Series(np.where(rng.random(n) < 0.1, "bank_unknown", "")).replace("", None),
        "is_pending": rng.random(n) < 0.1,
    }).sample(fraction=1.0, shuffle=True, seed=seed)  # rows out of row_number order
    want = _latest_by_window(checked.lazy(), "my_number", "linked_on").collect()
    got = validate._latest_per_key(checked.lazy(), key="my_number", order="linked_on").collect()
    assert got.equals(want)
    assert 1_000 < (got["reject_reason"] == "duplicate_key").sum() < n // 2
    # no key repeats: nothing to reject
    single = checked.unique("my_number", keep="first")
    assert validate._latest_per_key(single.lazy(), key="my_number", order="linked_on").collect().equals(single)
