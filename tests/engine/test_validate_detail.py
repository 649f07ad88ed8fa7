"""validate.with_detail (details written for the rejected rows only) against its reference,
validate.detail_expr over every row: the same text on every row, across streaming batches."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from engine import kernels, validate

RUN_DATE = date(2021, 12, 31)


def residents(n: int, seed: int) -> pl.DataFrame:
    """Valid residents with every resident rule broken on a few rows each."""
    rng = np.random.default_rng(seed)
    bases = rng.integers(10**10, 10**11 - 1, n)
    frame = pl.DataFrame({
        "my_number": pl.Series(bases * 10 + kernels.my_number_check_digits(bases)),
        "household_id": pl.Series(np.arange(n) // 2),
        "is_head": pl.Series(np.arange(n) % 2 == 0),
        "family_name_kana": pl.Series(rng.choice(["ｻﾄｳ", "ｽｽﾞｷ", "ﾀｶﾊｼ"], n).tolist()),
        "given_name_kana": pl.Series(rng.choice(["ﾊﾅｺ", "ﾀﾛｳ"], n).tolist()),
        "birth_date": pl.Series(rng.integers(-20_000, 18_000, n)).cast(pl.Date),
        "sex": pl.Series(rng.choice(["M", "F"], n).tolist()),
        "municipality_code": pl.Series(["011002"] * n),
        "registered_on": pl.Series(np.full(n, 18_100)).cast(pl.Date),
        "moved_out_on": pl.Series([None] * n, dtype=pl.Date),
        "died_on": pl.Series([None] * n, dtype=pl.Date),
    })
    planted = rng.choice(n, 7 * 40, replace=False).reshape(7, 40)
    broken = {
        "sex": (planted[0], pl.lit("X")),
        "municipality_code": (planted[1], pl.lit("011003")),
        "family_name_kana": (planted[2], pl.lit(None, pl.String)),
        "registered_on": (planted[3], pl.lit(date(1900, 1, 1))),
        "died_on": (planted[4], pl.lit(date(1901, 1, 1))),
        "my_number": (planted[5], pl.lit(-5, pl.Int64)),
    }
    index = pl.int_range(pl.len())
    frame = frame.with_columns(
        pl.when(index.is_in(pl.Series(rows).implode())).then(value).otherwise(pl.col(c)).alias(c)
        for c, (rows, value) in broken.items()
    )
    return pl.concat([frame, frame[planted[6]]])  # copies: duplicate_row


@pytest.mark.parametrize("seed", [0, 1])
def test_with_detail_matches_the_reference_over_every_row(seed: int) -> None:
    data = residents(20_000, seed)
    checked = validate.checked_residents(data.lazy(), RUN_DATE)
    # small morsels: many batches, some with no rejected row at all
    with pl.Config(streaming_chunk_size=500):
        got = checked.collect(engine="streaming")
    without = got.drop("detail")
    want = without.with_columns(validate.detail_expr(without.schema))
    assert got["detail"].to_list() == want["detail"].to_list()
    reasons = set(got["reject_reason"].drop_nulls())
    assert 0 < got["reject_reason"].is_not_null().mean() < 0.05
    assert {"invalid_value", "municipality_check_digit", "missing_value", "impossible_date",
            "my_number_format", "duplicate_row"} <= reasons
    assert got.filter(pl.col("reject_reason").is_null())["detail"].null_count() == got["reject_reason"].null_count()
    assert got.filter(pl.col("reject_reason").is_not_null())["detail"].null_count() == 0
    # a My Number is never quoted
    assert not got["detail"].drop_nulls().str.contains(r"\d{12}").any()


def test_a_batch_without_rejects_reads_null() -> None:
    data = residents(2_000, 2).filter(pl.int_range(pl.len()) < 10)
    clean = data.filter(validate.checked_residents(data.lazy(), RUN_DATE).collect()["reject_reason"].is_null())
    got = validate.checked_residents(clean.lazy(), RUN_DATE).collect()
    assert got.height and got["detail"].null_count() == got.height
    assert got.schema["detail"] == pl.String
