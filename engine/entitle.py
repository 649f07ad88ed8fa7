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
    return (
        members.group_by("household_id")
        .agg(
            pl.col("municipality_code").sort_by(pl.col("is_head").not_(), pl.col(ROW)).first(),
            pl.len().cast(pl.Int64).alias("registered_members"),
            pl.col("is_eligible").sum().cast(pl.Int64).alias("eligible_members"),
            (pl.col("is_eligible") & pl.col("is_declined")).sum().cast(pl.Int64).alias("declined_members"),
            pl.col("is_counted").sum().cast(pl.Int64).alias("counted_members"),
            (pl.col("is_eligible") & pl.col("is_living")).sum().cast(pl.Int64).alias("living_eligible_members"),
            (pl.col("is_head") & ~pl.col("is_living")).any().alias("is_head_deceased"),
        )
        .with_columns(
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


def payees(members: pl.LazyFrame) -> pl.LazyFrame:
    """The member who receives for each household: the head; if the head has died, the new head
    (the registry's is_head flag wins among the living, then the eldest living eligible member;
    実施要領, research §1.1)."""
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
