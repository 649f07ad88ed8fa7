"""Payee resolution: which account each entitled household is paid into (SPEC "Rules").

The payee's own linked account first; otherwise the account on the household's applications;
no account: the household awaits an application. A household is paid once, whatever the number
of channels and applications: applications that repeat the same account collapse into one.
"""

from __future__ import annotations

import polars as pl

from engine import identity, kana
from engine.ingest import ROW

ACCOUNT_KEY = ["bank_code", "branch_code", "account_type", "account_number"]


def account_label() -> pl.Expr:
    """bank-branch-type-number: the account as it appears in evidence and in the analyst tables."""
    return pl.concat_str([pl.col(c) for c in ACCOUNT_KEY], separator="-")


def application_summary(applications: pl.LazyFrame, payees: pl.LazyFrame) -> pl.LazyFrame:
    """One row per household with usable applications, in household_id order.

    The account comes from the payee's own applications when there are any (a new head who
    applied after the head died supersedes the deceased head's application), else from all of
    the household's; the earliest one's (by received_on, then file order). Also: the number of
    applications and of distinct accounts among those considered, and the online applications
    (all of them) made by someone who is neither the registered head nor the payee: §1.4 F7.

    Collected: the applications of a shard are a few hundred thousand rows. 98% of households
    have one application, whose summary is that row: only the others are grouped (the group-by,
    with its list of accounts per household, is the cost: 0.6 s on the 575k applications of 3M
    residents, benchmarks/RESULTS.md). `summarised` is the group-by for every household.
    """
    rows = _with_payee(applications, payees).collect()
    several = rows.get_column("household_id").is_duplicated()
    one = rows.filter(~several).select(
        "household_id",
        *[pl.col(c).alias(f"application_{c}") for c in ACCOUNT_KEY],
        pl.col("holder_name_kana").alias("application_holder_name_kana"),
        "application_id",
        (pl.col("applicant_my_number") == pl.col("registered_head_my_number")).fill_null(False)
        .alias("is_application_by_registered_head"),
        pl.lit(1, pl.Int64).alias("applications"),
        pl.lit(1, pl.Int64).alias("application_accounts"),
        pl.col("account").fill_null("").alias("application_account_list"),
        pl.col("is_online_not_head").fill_null(False).alias("has_online_not_head"),
        pl.when(pl.col("is_online_not_head")).then(pl.col("application_id")).alias("online_not_head_application_id"),
    )
    return pl.concat([one, _summarised(rows.filter(several).lazy()).collect()]).sort("household_id").lazy()


def summarised(applications: pl.LazyFrame, payees: pl.LazyFrame) -> pl.LazyFrame:
    """application_summary by one group-by over every household (the rule as written; the
    reference for application_summary's single-application rows)."""
    return _summarised(_with_payee(applications, payees))


def _with_payee(applications: pl.LazyFrame, payees: pl.LazyFrame) -> pl.LazyFrame:
    return applications.join(
        payees.select("household_id", "payee_my_number", "registered_head_my_number"), on="household_id", how="left"
    ).with_columns(
        account_label().alias("account"),
        (
            (pl.col("channel") == "online")
            & (pl.col("applicant_my_number") != pl.col("payee_my_number")).fill_null(True)
            & (pl.col("applicant_my_number") != pl.col("registered_head_my_number")).fill_null(True)
        ).alias("is_online_not_head"),
    )


def _summarised(rows: pl.LazyFrame) -> pl.LazyFrame:
    by_payee = pl.col("applicant_my_number") == pl.col("payee_my_number")
    considered = ~by_payee.fill_null(False).any().over("household_id") | by_payee.fill_null(False)
    first = pl.col("is_considered").arg_max()  # rows are sorted: the earliest considered one
    return (
        rows.with_columns(considered.alias("is_considered"))
        .sort(["household_id", "received_on", ROW])
        .group_by("household_id", maintain_order=True)
        .agg(
            *[pl.col(c).get(first).alias(f"application_{c}") for c in ACCOUNT_KEY],
            pl.col("holder_name_kana").get(first).alias("application_holder_name_kana"),
            pl.col("application_id").get(first).alias("application_id"),
            (pl.col("applicant_my_number") == pl.col("registered_head_my_number")).get(first).fill_null(False)
            .alias("is_application_by_registered_head"),
            pl.col("is_considered").sum().cast(pl.Int64).alias("applications"),
            pl.col("account").filter(pl.col("is_considered")).n_unique().cast(pl.Int64).alias("application_accounts"),
            pl.col("account").filter(pl.col("is_considered")).unique(maintain_order=True).str.join(", ")
            .alias("application_account_list"),
            pl.col("is_online_not_head").any().alias("has_online_not_head"),
            pl.col("application_id").filter(pl.col("is_online_not_head")).first()
            .alias("online_not_head_application_id"),
        )
    )


# what the resolution reads but nothing after it: not carried into the payee checkpoint (a
# national night writes it once per shard and reads it twice; the names are its widest columns)
NOT_READ_AFTER = ("payee_my_number", "payee_family_name_kana", "payee_given_name_kana", "registered_head_my_number",
                  "registered_head_family_name_kana", "registered_head_given_name_kana", "has_linked_account")


def resolved_accounts(
    households: pl.LazyFrame, payees: pl.LazyFrame, accounts: pl.LazyFrame, applications: pl.LazyFrame
) -> pl.LazyFrame:
    """Entitled households (household_id: their counts and yen stay in `households`, which
    standing joins back) with their payee and the account to pay into.

    Adds `account_source` (linked_account / application / none), the account columns,
    `holder_name_kana` as written and `holder_name_normalized`. The payee's and the registered
    head's My Numbers and names, read to resolve the account, are left out (NOT_READ_AFTER).
    """
    linked = accounts.select(
        pl.col("my_number").alias("payee_my_number"),
        *[pl.col(c).alias(f"linked_{c}") for c in ACCOUNT_KEY],
        pl.col("holder_name_kana").alias("linked_holder_name_kana"),
        has_linked_account=pl.lit(True),
    )
    summary = application_summary(applications, payees)
    joined = (
        households.filter(pl.col("entitled_yen") > 0).select("household_id")
        .join(payees, on="household_id", how="left")
        .join(linked, on="payee_my_number", how="left")
        .join(summary, on="household_id", how="left")
        .with_columns(pl.col("has_linked_account").fill_null(False),
                      pl.col("applications").fill_null(0))
    )
    from_linked = pl.col("has_linked_account")
    from_application = ~from_linked & (pl.col("applications") > 0)
    return joined.with_columns(
        pl.when(from_linked).then(pl.lit("linked_account"))
        .when(from_application).then(pl.lit("application"))
        .otherwise(pl.lit("none")).alias("account_source"),
        *[
            pl.when(from_linked).then(pl.col(f"linked_{c}"))
            .when(from_application).then(pl.col(f"application_{c}")).alias(c)
            for c in [*ACCOUNT_KEY, "holder_name_kana"]
        ],
    ).with_columns(
        kana.normalize_kana_expr(pl.col("holder_name_kana")).alias("holder_name_normalized"),
        # whose account it should be: the applicant's, when the registered head applied (the new
        # head is paid into it if the head has died since, §1.1); otherwise the payee's own
        kana.normalize_kana_expr(
            pl.when((pl.col("account_source") == "application")
                    & pl.col("is_application_by_registered_head").fill_null(False))
            .then(pl.concat_str("registered_head_family_name_kana", pl.lit(" "), "registered_head_given_name_kana"))
            .otherwise(pl.concat_str("payee_family_name_kana", pl.lit(" "), "payee_given_name_kana"))
        ).alias("expected_holder_normalized"),
        # the family name as identity matching reads it (サトー and サトウ are one family)
        identity.name_key(pl.col("payee_family_name_kana")).alias("payee_family_normalized"),
    ).drop([f"linked_{c}" for c in [*ACCOUNT_KEY, "holder_name_kana"]]
           + [f"application_{c}" for c in [*ACCOUNT_KEY, "holder_name_kana"]] + list(NOT_READ_AFTER))
