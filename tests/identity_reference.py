"""The fuzzy identity check's blocking and scoring as plain Polars joins: the slow, independent
twin of engine.identity.matched_pairs (whose kernel walks the blocks and never lists the pairs).

This is the engine's implementation before the kernel (candidate_pairs + matches), kept as it
was with one change: where a person key is held by two rows (one My Number registered in two
households), its pair with a partner can come from either row, and `unique(keep="first")` used
to keep whichever row the join happened to list first (it differed from run to run). Here the
pass that meets the pair first, then the smallest households and names, stand for the pair;
the engine chooses the same way.

    pairs = candidate_pairs(identity.identity_keys(members))     # LazyFrame, every compared pair
    matched, compared = reference_matched_pairs(keys, cfg)       # as identity.matched_pairs
"""

from __future__ import annotations

import polars as pl

from engine import similarity
from engine.config import ChecksConfig
from engine.identity import BLOCKING_PASSES

CARRIED = ("person_key", "my_number", "household_id", "birth_date", "name_key", "family_key", "given_key")
# what stands for a person-key pair met by several row pairs: the first pass, then these
TIE_BREAK = [f"{c}_{side}" for c in CARRIED[2:] for side in ("l", "r")]


def candidate_pairs(keys: pl.LazyFrame) -> pl.LazyFrame:
    """Pairs (person_key_l < person_key_r) sharing a block in either pass, in different
    households and with different My Numbers (the same number twice is a double registration)."""
    passes = []
    for number, block in enumerate(BLOCKING_PASSES, start=1):
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
            .with_columns(pass_number=pl.lit(number))
        )
    return (
        pl.concat(passes)
        .sort("person_key_l", "person_key_r", "pass_number", *TIE_BREAK)
        .unique(subset=["person_key_l", "person_key_r"], keep="first", maintain_order=True)
        .drop("pass_number")
    )


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


def reference_matched_pairs(keys: pl.DataFrame, cfg: ChecksConfig) -> tuple[pl.DataFrame, int]:
    """identity.matched_pairs the old way: list every candidate pair, score them all, filter."""
    pairs = candidate_pairs(keys.lazy()).collect()
    return matches(pairs, cfg).sort("person_key_l", "person_key_r"), pairs.height
