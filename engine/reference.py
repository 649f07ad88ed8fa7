"""Reference data from maintained sources: the bank master (zengin-code), the municipality table
(JIS X 0402, `data/municipalities.csv`) and Japanese bank business days (holidays).

Loaded once per process; each loader returns a small Polars frame or a set for lookups.
"""

from __future__ import annotations

import functools
from datetime import date, timedelta
from pathlib import Path

import holidays
import jaconv
import polars as pl

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
MUNICIPALITIES_CSV = DATA_DIR / "municipalities.csv"


def zengin_half_width(kana: str) -> str:
    """zengin-code's kana is already Zengin style in full width (research §6.1): only narrow it."""
    return jaconv.z2h(kana, kana=True, ascii=True, digit=True)


@functools.cache
def _bank_master() -> tuple[pl.DataFrame, pl.DataFrame]:
    from zengin_code import Bank  # importing loads the whole master (~0.8 s)

    bank_rows = {"bank_code": [], "bank_name_kana": []}
    branch_rows = {"bank_code": [], "branch_code": [], "branch_name_kana": []}
    for code, bank in Bank.all.items():
        bank_rows["bank_code"].append(code)
        bank_rows["bank_name_kana"].append(zengin_half_width(bank.kana))
        for branch_code, branch in bank.branches.items():
            branch_rows["bank_code"].append(code)
            branch_rows["branch_code"].append(branch_code)
            branch_rows["branch_name_kana"].append(zengin_half_width(branch.kana))
    return pl.DataFrame(bank_rows), pl.DataFrame(branch_rows)


def banks() -> pl.DataFrame:
    """One row per bank: bank_code, bank_name_kana (half-width, Zengin style)."""
    return _bank_master()[0]


def branches() -> pl.DataFrame:
    """One row per branch: bank_code, branch_code, branch_name_kana (half-width, Zengin style)."""
    return _bank_master()[1]


@functools.cache
def bank_names() -> dict[str, str]:
    return dict(banks().iter_rows())


@functools.cache
def branch_names() -> dict[tuple[str, str], str]:
    return {(b, c): n for b, c, n in branches().iter_rows()}


@functools.cache
def bank_version() -> str:
    import zengin_code

    return str(getattr(zengin_code, "__version__", "unknown"))


@functools.cache
def municipalities() -> pl.DataFrame:
    """JIS X 0402 codes with check digit: municipality_code (6 chars), prefecture_code, names, kana.

    Prefecture rows (city empty) are kept with `is_prefecture`; residents live in municipalities.
    """
    df = pl.read_csv(MUNICIPALITIES_CSV, schema_overrides={"municipality_code": pl.String,
                                                          "prefecture_code": pl.String})
    return df.with_columns(
        pl.col("city").fill_null(""),
        pl.col("city_kana").fill_null(""),
        is_prefecture=pl.col("city").fill_null("") == "",
    )


@functools.cache
def _bank_holidays(year_from: int, year_to: int) -> frozenset[date]:
    # categories: national holidays plus the banks' own closing days (Dec 31, Jan 2-3)
    jp = holidays.country_holidays("JP", years=range(year_from, year_to + 1),
                                   categories=("public", "bank"))
    return frozenset(jp.keys())


def is_bank_business_day(day: date) -> bool:
    return day.weekday() < 5 and day not in _bank_holidays(day.year - 1, day.year + 1)


def next_bank_business_day(day: date) -> date:
    """The first bank business day strictly after `day` (a transfer designated for the next day)."""
    candidate = day + timedelta(days=1)
    while not is_bank_business_day(candidate):
        candidate += timedelta(days=1)
    return candidate
