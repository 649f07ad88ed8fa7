"""Checks: identity and payout checks that hold a household with reason codes and evidence.

resolved households (payout.resolved_accounts) + members → one row per household with
`hold_reasons` (sorted list of codes from schemas.HOLD_REASONS, empty when clean) and
`hold_evidence` (one line per reason; persons appear by surrogate key, never by My Number).
"""

from __future__ import annotations

import polars as pl

from engine import identity, similarity
from engine.config import ChecksConfig
from engine.payout import account_label


def double_registrations(members: pl.LazyFrame) -> pl.LazyFrame:
    """Households holding a person whose My Number is eligible in another household too."""
    in_households = (
        members.filter(pl.col("is_eligible"))
        .select("my_number", "household_id", "person_key")
        .filter(pl.col("my_number").is_duplicated())  # a hash pass; the grouping sees only these
        .group_by("my_number")
        .agg(pl.col("household_id").unique().sort().alias("households"), pl.col("person_key").first())
        .filter(pl.col("households").list.len() > 1)
        .with_columns(
            pl.format("person {} is registered in households {}", pl.col("person_key"),
                      pl.col("households").cast(pl.List(pl.String)).list.join(", "))
            .alias("evidence")
        )
    )
    return (
        in_households.explode("households", keep_nulls=False)
        .select(pl.col("households").alias("household_id"), "evidence")
        # one line per such member when a household holds several
        .group_by("household_id").agg(pl.col("evidence").sort().str.join("; "))
        .with_columns(reason=pl.lit("double_registration"))
    )


def shared_accounts(resolved: pl.LazyFrame, cfg: ChecksConfig) -> pl.LazyFrame:
    """Households whose payee account also receives for unrelated households (mule accounts).

    Households are related when their payees share a family name (normalised kana): a child
    paying an elderly parent's household into the family account is not a mule. An account is
    held when it receives for at least `shared_account_min_households` households among which
    at least two family names appear (research §2.5: the State's own search for wrong-person
    accounts kept accounts registered to several people with different surnames).
    """
    with_account = resolved.filter(pl.col("account_source") != "none").with_columns(
        account=account_label()
    )
    per_account = (
        with_account.filter(pl.col("account").is_duplicated())
        .group_by("account")
        .agg(
            pl.col("household_id").n_unique().alias("households"),
            pl.col("payee_family_normalized").n_unique().alias("family_names"),
            pl.col("household_id").unique().sort().cast(pl.String).str.join(", ").alias("household_list"),
        )
        .filter(
            (pl.col("households") >= cfg.shared_account_min_households) & (pl.col("family_names") >= 2)
        )
    )
    return with_account.join(per_account, on="account", how="inner").select(
        "household_id",
        pl.format("account {} receives for {} households with {} family names: {}",
                  "account", "households", "family_names", "household_list").alias("evidence"),
        reason=pl.lit("shared_account"),
    )


def name_similarity(resolved: pl.DataFrame) -> pl.Series:
    """Jaro-Winkler of the normalised holder name and the name the account should carry (the
    payee's own; the applying head's for an application by the registered head), spaces removed
    (the holder may write the name without the space between family and given name)."""
    holder = resolved["holder_name_normalized"].str.replace_all(" ", "", literal=True)
    expected = resolved["expected_holder_normalized"].str.replace_all(" ", "", literal=True)
    return similarity.jaro_winkler(holder, expected)


def row_holds(resolved: pl.DataFrame, cfg: ChecksConfig) -> pl.DataFrame:
    """The checks that look at one household's own row: holder name, applicant, applications."""
    scored = resolved.with_columns(name_similarity(resolved).alias("holder_name_similarity"))
    from_application = pl.col("account_source") == "application"
    rules = {
        "holder_name_mismatch": (
            (pl.col("account_source") != "none")
            & (pl.col("holder_name_similarity") < cfg.holder_name_min_similarity),
            pl.format("holder name {} vs {} {} (similarity {})", "holder_name_normalized",
                      pl.when(from_application & pl.col("is_application_by_registered_head"))
                      .then(pl.lit("applying head")).otherwise(pl.lit("payee")),
                      "expected_holder_normalized", pl.col("holder_name_similarity").round(3)),
        ),
        "applicant_not_head": (
            from_application & pl.col("has_online_not_head").fill_null(False),
            pl.format("online application {} was not made by the head (person {})",
                      "online_not_head_application_id", "payee_person_key"),
        ),
        "conflicting_applications": (
            from_application & (pl.col("application_accounts") > 1),
            pl.format("{} applications carry {} different accounts: {}", "applications",
                      "application_accounts", "application_account_list"),
        ),
    }
    frames = [
        scored.filter(flag.fill_null(False)).select("household_id", evidence.alias("evidence"),
                                                    reason=pl.lit(name))
        for name, (flag, evidence) in rules.items()
    ]
    return pl.concat(frames, how="vertical")


def global_holds(members: pl.LazyFrame, resolved: pl.LazyFrame,
                 cfg: ChecksConfig) -> tuple[list[pl.DataFrame], int]:
    """The checks that compare households with each other (one My Number in several households,
    one person under several My Numbers, one account for unrelated households)."""
    fuzzy, compared_pairs = identity.fuzzy_identities(members, cfg)
    return [
        double_registrations(members).select("household_id", "evidence", "reason").collect(),
        fuzzy.select("household_id", "evidence", "reason"),
        shared_accounts(resolved, cfg).collect(),
    ], compared_pairs


def with_holds(resolved: pl.DataFrame, members: pl.LazyFrame, cfg: ChecksConfig,
               across: pl.DataFrame | None = None) -> tuple[pl.DataFrame, int]:
    """`resolved` with `hold_reasons` (list, sorted, empty when clean) and `hold_evidence`;
    and the number of person pairs the fuzzy identity check compared.

    `across`: the holds of the checks across households (household_id, evidence, reason),
    when a sharded night computed them over the whole nation; by default they are computed
    here over `members` and `resolved`."""
    if across is None:
        found, compared_pairs = global_holds(members, resolved.lazy(), cfg)
    else:
        found, compared_pairs = [across.select("household_id", "evidence", "reason")], 0
    holds = pl.concat([*found, row_holds(resolved, cfg)], how="vertical_relaxed")
    per_household = (
        holds.sort("household_id", "reason")
        .group_by("household_id", maintain_order=True)
        .agg(
            pl.col("reason").alias("hold_reasons"),
            pl.format("{}: {}", "reason", "evidence").str.join("\n").alias("hold_evidence"),
        )
    )
    held = resolved.join(per_household, on="household_id", how="left").with_columns(
        pl.col("hold_reasons").fill_null(pl.lit([], dtype=pl.List(pl.String))),
    )
    return held, compared_pairs
