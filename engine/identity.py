"""Identity: different My Numbers that are clearly one person (research §1.4, SPEC "identity").

eligible members → candidate_pairs (blocking) → scored_pairs (Jaro-Winkler of normalised kana)
→ matches → identity_clusters (union-find). Each cluster is held for review, never merged.

Blocking (Splink-style): two passes, each joining members born on the same day with the same
sex, one on the normalised family name and one on the normalised given name, so a name changed
in either half still meets its twin. Pairs inside one household are skipped (twins share a
birth date and a family name; a duplicate registration is in another household).
"""

from __future__ import annotations

import polars as pl

from engine import kana, similarity
from engine.config import ChecksConfig

BLOCKING_PASSES = (("birth_date", "sex", "family_key"), ("birth_date", "sex", "given_key"))


def name_key(expr: pl.Expr) -> pl.Expr:
    """Normalised kana for matching: Zengin normalisation, no spaces, the long vowel mark read
    as ウ (ユー and ユウ, コー and コウ are one name written two ways), no voiced marks."""
    return (
        kana.normalize_kana_expr(expr)
        .str.replace_all(" ", "", literal=True)
        .str.replace_all("-", "ｳ", literal=True)
        # voiced marks dropped: クキ and グキ, a keying or OCR slip (§1.4 F6), are one name
        .str.replace_all("[ﾞﾟ]", "")
    )


def identity_keys(members: pl.LazyFrame) -> pl.LazyFrame:
    """Eligible members with the normalised name columns that blocking and scoring use."""
    return members.filter(pl.col("is_eligible")).select(
        "person_key", "my_number", "household_id", "birth_date", "sex",
        name_key(pl.col("family_name_kana")).alias("family_key"),
        name_key(pl.col("given_name_kana")).alias("given_key"),
    ).with_columns(name_key=pl.col("family_key") + pl.col("given_key"))


CARRIED = ("person_key", "my_number", "household_id", "birth_date", "name_key", "family_key", "given_key")


def candidate_pairs(keys: pl.LazyFrame) -> pl.LazyFrame:
    """Pairs (person_key_l < person_key_r) sharing a block in either pass, in different
    households and with different My Numbers (the same number twice is a double registration)."""
    passes = []
    for block in BLOCKING_PASSES:
        block_keys = [f"block_{i}" for i in range(len(block))]
        sides = {
            side: keys.select(
                *[pl.col(c).alias(k) for c, k in zip(block, block_keys)],
                *[pl.col(c).alias(f"{c}_{side}") for c in CARRIED],
            )
            for side in ("l", "r")
        }
        passes.append(
            sides["l"].join(sides["r"], on=block_keys, how="inner")
            .filter(
                (pl.col("person_key_l") < pl.col("person_key_r"))
                & (pl.col("household_id_l") != pl.col("household_id_r"))
                & (pl.col("my_number_l") != pl.col("my_number_r"))
            )
            .select(f"{c}_{side}" for c in CARRIED if c != "my_number" for side in ("l", "r"))
        )
    return pl.concat(passes).unique(subset=["person_key_l", "person_key_r"], keep="first")


def matches(pairs: pl.DataFrame, cfg: ChecksConfig) -> pl.DataFrame:
    """Scored pairs: the whole name at or above `fuzzy_name_min_similarity`, and each half at
    or above `fuzzy_part_min_similarity` (a shared family name alone must not carry a match:
    ゴトウ リ and ゴトウ ナリコ are two people)."""
    return pairs.with_columns(
        similarity.jaro_winkler(pairs["name_key_l"], pairs["name_key_r"]).alias("similarity"),
        similarity.jaro_winkler(pairs["family_key_l"], pairs["family_key_r"]).alias("family_similarity"),
        similarity.jaro_winkler(pairs["given_key_l"], pairs["given_key_r"]).alias("given_similarity"),
    ).filter(
        (pl.col("similarity") >= cfg.fuzzy_name_min_similarity)
        & (pl.col("family_similarity") >= cfg.fuzzy_part_min_similarity)
        & (pl.col("given_similarity") >= cfg.fuzzy_part_min_similarity)
    )


def fuzzy_identities(members: pl.LazyFrame, cfg: ChecksConfig) -> tuple[pl.DataFrame, int]:
    """Households to hold for a fuzzy identity, with evidence; and the number of compared pairs.

    Clusters come from union-find over the matched pairs, so three registrations of one person
    form one cluster; every household holding a member of a cluster is held.
    """
    pairs = candidate_pairs(identity_keys(members)).collect()
    matched = matches(pairs, cfg)
    if matched.is_empty():
        return pl.DataFrame(schema={"household_id": pl.Int64, "evidence": pl.String,
                                    "reason": pl.String}), pairs.height
    persons = pl.concat([
        matched.select(pl.col("person_key_l").alias("person_key"), pl.col("household_id_l").alias("household_id")),
        matched.select(pl.col("person_key_r").alias("person_key"), pl.col("household_id_r").alias("household_id")),
    ]).unique().sort("person_key", "household_id")
    nodes = persons["person_key"].unique().sort()
    cluster = pl.DataFrame({
        "person_key": nodes,
        "cluster": similarity.components(nodes, matched["person_key_l"], matched["person_key_r"]),
    })
    names = (
        matched.join(cluster, left_on="person_key_l", right_on="person_key")
        .sort("cluster", "person_key_l", "person_key_r")
        .group_by("cluster", maintain_order=True)
        .agg(pl.format("{} ~ {} ({})", "name_key_l", "name_key_r", pl.col("similarity").round(3))
             .first().alias("names"))
    )
    members_of = (
        persons.join(cluster, on="person_key")
        .group_by("cluster")
        .agg(pl.col("person_key").unique().sort().cast(pl.String).str.join(", ").alias("persons"),
             pl.col("household_id").unique().sort().cast(pl.String).str.join(", ").alias("households"))
        .join(names, on="cluster")
    )
    held = (
        persons.join(cluster, on="person_key")
        .join(members_of, on="cluster")
        .sort("household_id", "cluster")
        .group_by("household_id", maintain_order=True)
        .agg(
            pl.format("persons {} look like one person (same birth date and sex, names {}), "
                      "in households {}", "persons", "names", "households").unique().sort().str.join("; ")
            .alias("evidence")
        )
        .with_columns(reason=pl.lit("fuzzy_identity"))
    )
    return held, pairs.height
