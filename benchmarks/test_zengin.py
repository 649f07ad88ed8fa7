"""Benchmarks: Zengin transfer file (build + encode) and kana name normalisation, seeded data.

    .venv/bin/pytest benchmarks/test_zengin.py --benchmark-enable -m "slow or not slow"
"""

from __future__ import annotations

import functools
from datetime import date

import numpy as np
import polars as pl
import pytest

from engine import kana, reference, zengin

REMITTER = zengin.Remitter(
    code="1234560789",
    name_kana="ﾄｸﾍﾞﾂﾃｲｶﾞｸｷﾕｳﾌｷﾝ",
    bank_code="0009",
    bank_name_kana="ﾐﾂｲｽﾐﾄﾓ",
    branch_code="825",
    branch_name_kana="ｱｶｻｶ",
    account_type="1",
    account_number="9876543",
)
FAMILY = ["ヤマダ", "サトウ", "スズキ", "タカハシ", "タナカ", "イトウ", "ワタナベ", "ナカムラ",
          "コバヤシ", "カトウ", "ヨシダ", "ヤマモト", "ショウジ", "キッカワ", "オオノ"]
GIVEN = ["タロウ", "ハナコ", "ショウゴ", "キョウコ", "リョウ", "ユウキ", "ケンジ", "ヲサム",
         "ジョージ", "ミサキ", "ヒロシ", "ユウコ"]


@functools.cache
def raw_names(n: int, seed: int = 0) -> pl.DataFrame:
    """`n` full-width katakana names with a full-width space, as registries hold them."""
    rng = np.random.default_rng(seed)
    family = pl.Series(FAMILY)[rng.integers(0, len(FAMILY), size=n)]
    given = pl.Series(GIVEN)[rng.integers(0, len(GIVEN), size=n)]
    return pl.DataFrame({"name": family + "\u3000" + given})


@functools.cache
def transfers(n: int, seed: int = 0) -> pl.DataFrame:
    """`n` payees at real branches, names already normalised (the writer's contract)."""
    rng = np.random.default_rng(seed)
    branches = reference.branches().join(reference.banks(), on="bank_code")
    picked = branches[rng.integers(0, branches.height, size=n)]
    return picked.with_columns(raw_names(n, seed)).select(
        "bank_code", "bank_name_kana", "branch_code", "branch_name_kana",
        account_type=pl.lit("1"),
        account_number=pl.Series(rng.integers(1, 10**7, size=n)).cast(pl.String),
        payee_name_kana=kana.zengin_name_expr(pl.col("name")),
        amount_yen=pl.lit(100_000, dtype=pl.Int64),
        customer_code_1=pl.Series(np.arange(n), dtype=pl.Int64),
        customer_code_2=pl.lit(None, dtype=pl.Int64),
    )


# A file holds at most 999,999 data records (trailer 合計件数 is N(6)): the "1M" case is the
# largest legal file, 1,000,002 records with header, trailer and end.
@pytest.mark.parametrize("n", [100_000, pytest.param(zengin.MAX_RECORDS, marks=pytest.mark.slow)])
def test_transfer_file_bytes(benchmark, n: int) -> None:
    frame = transfers(n)
    benchmark.group = f"zengin|{n}"
    data = benchmark(lambda: zengin.transfer_file_bytes(REMITTER, date(2020, 6, 1), frame))
    assert len(data) == (n + 3) * 122


@pytest.mark.parametrize("n", [100_000, pytest.param(1_000_000, marks=pytest.mark.slow)])
def test_normalize_kana_expr(benchmark, n: int) -> None:
    names = raw_names(n)
    kana.character_table()  # built once per process; not what we time
    benchmark.group = f"kana|{n}"
    out = benchmark(lambda: names.select(kana.zengin_name_expr(pl.col("name"))))
    assert out.height == n
    assert out.select(kana.is_zengin_safe_expr(pl.col("name")).all()).item()
