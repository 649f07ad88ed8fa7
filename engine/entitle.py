"""Entitle: who is eligible on the basis date, and what each household is owed (research §1.1).

members (valid residents + person_key) → members with `not_eligible_reason`, `is_declined`
→ household_entitlements: one row per household with the yen it is owed, in whole yen.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from engine.config import BenefitConfig
from engine.ingest import ROW


def not_eligible_reason(basis: date) -> pl.Expr:
    """Why a valid resident is not eligible on the basis date (null when eligible).

    Eligible (§1.1): on the register on the basis date (registered_on ≤ basis < moved_out_on),
    born on or before the basis date, and not died before it (died on the basis date counts).
    """
    return (
        pl.when(pl.col("birth_date") > basis).then(pl.lit("born_after_basis"))
        .when(pl.col("died_on") < basis).then(pl.lit("died_before_basis"))
        .when((pl.col("registered_on") > basis) | (pl.col("moved_out_on") <= basis))
        .then(pl.lit("not_registered_on_basis"))
        .otherwise(pl.lit(None, pl.String))
        .alias("not_eligible_reason")
    )


def declined_members(applications: pl.LazyFrame) -> pl.LazyFrame:
    """(household_id, my_number) of every member opted out on a usable application."""
    return (
        applications.select("household_id", pl.col("declined_my_numbers").alias("my_number"))
        .explode("my_number")
        .drop_nulls("my_number")
        .unique()
    )


def eligible_members(members: pl.LazyFrame, declined: pl.LazyFrame, cfg: BenefitConfig) -> pl.LazyFrame:
    """Members annotated with `not_eligible_reason`, `is_declined`, `is_living`, `is_counted`.

    `is_counted`: eligible and not opted out: the member whose share is paid.
    `is_living`: alive on the run date (deaths after the run date are not known yet).
    """
    return (
        members.join(declined.with_columns(is_declined=pl.lit(True)),
                     on=["household_id", "my_number"], how="left", maintain_order="left")
        .with_columns(not_eligible_reason(cfg.basis_date), pl.col("is_declined").fill_null(False))
        .with_columns(
            is_eligible=pl.col("not_eligible_reason").is_null(),
            is_living=pl.col("died_on").is_null(),
        )
        .with_columns(is_counted=pl.col("is_eligible") & ~pl.col("is_declined"))
    )


def household_entitlements(members: pl.LazyFrame, cfg: BenefitConfig) -> pl.LazyFrame:
    """One row per household: counts of members and `entitled_yen` (whole yen).

    A member who died on or after the basis date still counts while the household has another
    living eligible member; a household with no living eligible member is not payable (§1.1).
    """
    return _payable(members.group_by("household_id").agg(_household_counts()), cfg)


def payees(members: pl.LazyFrame) -> pl.LazyFrame:
    """The member who receives for each household: the head; if the head has died, the new head
    (the registry's is_head flag wins among the living, then the eldest living eligible member;
    実施要領, research §1.1). One row per household with a living eligible member, with its
    registered head (the head with the lowest My Number) beside it."""
    return payees_of(_with_payee_fields(members.group_by("household_id").agg(_payee_keys()), members))


PAYEE_COLUMNS = ("payee_my_number", "payee_person_key", "payee_family_name_kana", "payee_given_name_kana",
                 "registered_head_my_number", "registered_head_family_name_kana", "registered_head_given_name_kana")


def households_with_payees(members: pl.LazyFrame, cfg: BenefitConfig) -> pl.LazyFrame:
    """household_entitlements with the payees columns (PAYEE_COLUMNS) beside them, from one
    aggregation of the members; the payee columns are null where the household has no living
    eligible member (living_eligible_members == 0), as payees leaves such a household out."""
    keys = members.group_by("household_id").agg(*_household_counts(), *_payee_keys())
    return _payable(_with_payee_fields(keys, members), cfg)


def payees_of(households: pl.LazyFrame) -> pl.LazyFrame:
    """The payees of households with the payee columns (households_with_payees): the households
    that have one, as payees gives them."""
    return households.filter(pl.col("payee_my_number").is_not_null()).select("household_id", *PAYEE_COLUMNS)


def _household_counts() -> list[pl.Expr]:
    return [
        pl.col("municipality_code").min_by(_not_head() * 2**_HEAD_SHIFT + pl.col(ROW).cast(pl.Int64)),
        pl.len().cast(pl.Int64).alias("registered_members"),
        pl.col("is_eligible").sum().cast(pl.Int64).alias("eligible_members"),
        (pl.col("is_eligible") & pl.col("is_declined")).sum().cast(pl.Int64).alias("declined_members"),
        pl.col("is_counted").sum().cast(pl.Int64).alias("counted_members"),
        (pl.col("is_eligible") & pl.col("is_living")).sum().cast(pl.Int64).alias("living_eligible_members"),
        (pl.col("is_head") & ~pl.col("is_living")).any().alias("is_head_deceased"),
    ]


def _payable(households: pl.LazyFrame, cfg: BenefitConfig) -> pl.LazyFrame:
    return (
        households.with_columns(
            pl.when(pl.col("eligible_members") == 0).then(pl.lit("no_eligible_member"))
            .when(pl.col("living_eligible_members") == 0).then(pl.lit("no_living_member"))
            .when(pl.col("counted_members") == 0).then(pl.lit("all_declined"))
            .alias("not_payable_reason")
        )
        .with_columns(
            pl.when(pl.col("not_payable_reason").is_null())
            .then(pl.col("counted_members") * cfg.amount_per_person_yen)
            .otherwise(0)
            .cast(pl.Int64)
            .alias("entitled_yen")
        )
    )


# the payee is the living eligible member first in (is_head first, birth_date, row) order: that
# order packed into one integer, whose minimum per household names the payee's row, so that the
# members are aggregated, not sorted (1.25x faster on 3M members, benchmarks/RESULTS.md): not a
# head at bit 52, the birth date at bits 34–51 (days since 1970 + 2^16; 0 when unknown, first, as
# a sort puts nulls), the row below (a dataset of fewer than 2^34 rows: the members' unique key)
_BIRTH_SHIFT, _HEAD_SHIFT, _DAY_OFFSET = 34, 52, 2**16
_PAYEE_ROW, _HEAD_ROW = "__payee_row", "__head_row"


def _not_head() -> pl.Expr:
    return (~pl.col("is_head")).cast(pl.Int64)


def _payee_keys() -> list[pl.Expr]:
    """The rows of the payee and of the registered head (null when there is none)."""
    days = (pl.col("birth_date").cast(pl.Int32).cast(pl.Int64) + _DAY_OFFSET).fill_null(0)
    row = pl.col(ROW).cast(pl.Int64)
    order = _not_head() * 2**_HEAD_SHIFT + days * 2**_BIRTH_SHIFT + row
    return [
        (pl.when(pl.col("is_eligible") & pl.col("is_living")).then(order).min() % 2**_BIRTH_SHIFT).alias(_PAYEE_ROW),
        row.min_by(pl.when(pl.col("is_head")).then(pl.col("my_number"))).alias(_HEAD_ROW),
    ]


def _with_payee_fields(keys: pl.LazyFrame, members: pl.LazyFrame) -> pl.LazyFrame:
    """`keys` (_payee_keys per household) with the payee's and the registered head's columns."""
    named = ("my_number", "person_key", "family_name_kana", "given_name_kana")
    fields = members.select(pl.col(ROW).cast(pl.Int64), *named)
    payee = fields.select(pl.col(ROW).alias(_PAYEE_ROW), *(pl.col(c).alias(f"payee_{c}") for c in named))
    head = fields.select(pl.col(ROW).alias(_HEAD_ROW), pl.col("my_number").alias("registered_head_my_number"),
                         *(pl.col(c).alias(f"registered_head_{c}") for c in ("family_name_kana", "given_name_kana")))
    return (
        keys.join(payee, on=_PAYEE_ROW, how="left")
        .join(head, on=_HEAD_ROW, how="left")
        .drop(_PAYEE_ROW, _HEAD_ROW)
    )


def without_paid_elsewhere(members: pl.LazyFrame, paid_persons: pl.LazyFrame) -> pl.LazyFrame:
    """Members whose share was already paid with another household are not counted again: no
    person is paid twice, whichever household they are registered in tonight."""
    elsewhere = paid_persons.select("person_key", pl.col("household_id").alias("paid_household_id"))
    return (
        members.join(elsewhere, on="person_key", how="left", maintain_order="left")
        .with_columns(is_paid_elsewhere=(pl.col("paid_household_id").is_not_null()
                                         & (pl.col("paid_household_id") != pl.col("household_id"))))
        .with_columns(
            pl.when(pl.col("is_eligible") & pl.col("is_paid_elsewhere"))
            .then(pl.lit("paid_in_another_household")).otherwise(pl.col("not_eligible_reason"))
            .alias("not_eligible_reason"),
            (pl.col("is_counted") & ~pl.col("is_paid_elsewhere")).alias("is_counted"),
        )
        .drop("paid_household_id", "is_paid_elsewhere")
    )
