"""Identity: different My Numbers that are clearly one person (research §1.4, SPEC "identity").

eligible members → identity_keys → matched_pairs (blocking and Jaro-Winkler of normalised kana,
in one numba kernel) → clusters (union-find) → held households. Each cluster is held for review,
never merged.

Blocking (Splink-style): two passes, each meeting members born on the same day with the same
sex, one on the normalised family name and one on the normalised given name, so a name changed
in either half still meets its twin. Pairs inside one household are skipped (twins share a
birth date and a family name; a duplicate registration is in another household). The candidate
pairs grow with the square of the block sizes, so they are never listed: the kernel walks each
block in place and returns the matches (tests/identity_reference.py lists them, as a slow twin).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from engine import kana, kernels, similarity, sorted_index
from engine.config import ChecksConfig
from engine.errors import EngineError

BLOCKING_PASSES = (("birth_date", "sex", "family_key"), ("birth_date", "sex", "given_key"))


def name_key(expr: pl.Expr) -> pl.Expr:
    """Normalised kana for matching (`kana.matching_key`): Zengin normalisation, no spaces, the
    long vowel mark read as ウ (ユー and ユウ, コー and コウ are one name written two ways), no
    voiced marks (クキ and グキ, a keying or OCR slip, §1.4 F6, are one name)."""
    return kana.matching_key_expr(expr)


def identity_keys(members: pl.LazyFrame) -> pl.LazyFrame:
    """Eligible members with the normalised name columns that blocking and scoring use."""
    return members.filter(pl.col("is_eligible")).select(
        "person_key", "my_number", "household_id", "birth_date", "sex",
        name_key(pl.col("family_name_kana")).alias("family_key"),
        name_key(pl.col("given_name_kana")).alias("given_key"),
    ).with_columns(name_key=pl.col("family_key") + pl.col("given_key"))


CARRIED = ("person_key", "household_id", "birth_date", "name_key", "family_key", "given_key")
KEY_COLUMNS = ("person_key", "my_number", "household_id", "birth_date", "sex", "family_key", "given_key", "name_key")
# a row without these never meets another: a blocking join matches no nulls, and a comparison
# with a null household, My Number or person key is never true
ROW_KEYS = ("person_key", "my_number", "household_id", "birth_date", "sex")
STRING_KEYS = ("sex", "family_key", "given_key", "name_key")


def _shared_person_keys(keys: pl.DataFrame) -> pl.Series:
    """Person keys held by more than one row (one My Number registered in two households).

    By sorting, not hashing: at 10M rows `is_duplicated()` took 3.3 s, this 0.6 s.
    """
    ordered = keys.get_column("person_key").drop_nulls().sort()
    return ordered.filter(ordered == ordered.shift(1)).unique()


def _row_arrays(keys: pl.DataFrame, shared_person_keys: pl.Series) -> dict[str, np.ndarray]:
    """The kernel's integer columns (nulls as 0: such rows never meet) and each row's flags."""
    def flag(condition: pl.Expr, value: int) -> pl.Expr:
        return pl.when(condition).then(value).otherwise(0)

    arrays = keys.select(
        pl.col("person_key", "my_number", "household_id").cast(pl.Int64).fill_null(0),
        pl.col("birth_date").cast(pl.Int64).fill_null(0),
        flags=(
            flag(pl.col("person_key").is_in(shared_person_keys.implode()), kernels.SHARED_PERSON_KEY)
            | flag(pl.all_horizontal(pl.col("name_key", "family_key", "given_key").is_not_null()), kernels.SCORABLE)
            | flag(pl.col("family_key").is_not_null(), kernels.FAMILY_IS_SET)
        ).cast(pl.Int64),
    )
    return {name: arrays.get_column(name).to_numpy() for name in arrays.columns}


def _blocked(keys: pl.DataFrame, rows: dict[str, np.ndarray], strings: dict[str, tuple],
             pass_number: int) -> tuple[np.ndarray, np.ndarray]:
    """One blocking pass's hashed rows (unsorted) and key codes (kernels.block_hashed_rows)."""
    block_key = BLOCKING_PASSES[pass_number - 1][-1]
    can_meet = keys.select(pl.all_horizontal(pl.col(*ROW_KEYS, block_key).is_not_null())).to_series()
    return kernels.block_hashed_rows(rows["birth_date"], *strings["sex"][:2], *strings[block_key][:2],
                                     can_meet.to_numpy())


def _emitted_pairs(rows: dict[str, np.ndarray], strings: dict[str, tuple], blocked: tuple[np.ndarray, np.ndarray],
                   pass_number: int, cfg: ChecksConfig) -> tuple[pl.DataFrame, int]:
    """One blocking pass through the kernel: the row pairs it emitted (row_l, row_r, the three
    similarities, is_matched, pass_number) and the pairs it counted."""
    block_key = BLOCKING_PASSES[pass_number - 1][-1]
    hashed_rows, key_codes = blocked
    hashed_rows = sorted_index.ascending(hashed_rows)
    left, right, whole, family, given, is_matched, compared = kernels.fuzzy_identity_pairs(
        hashed_rows, rows["birth_date"], key_codes,
        rows["person_key"], rows["my_number"], rows["household_id"], rows["flags"],
        block_key == "given_key",  # the given-name pass skips what the family-name pass compared
        *strings["family_key"][:2], *strings["given_key"][:2], *strings["name_key"][:2],
        float(cfg.fuzzy_name_min_similarity), float(cfg.fuzzy_part_min_similarity),
    )
    emitted = pl.DataFrame({
        "row_l": left, "row_r": right, "similarity": whole, "family_similarity": family,
        "given_similarity": given, "is_matched": is_matched,
    }).with_columns(pass_number=pl.lit(pass_number, dtype=pl.Int8))
    return emitted, int(compared)


def matched_pairs(keys: pl.DataFrame, cfg: ChecksConfig) -> tuple[pl.DataFrame, int]:
    """Pairs of identity keys that match, one row per (person_key_l < person_key_r), sorted by
    them; and the number of pairs compared.

    Compared: every pair sharing a block in either pass (BLOCKING_PASSES), in two households with
    two My Numbers (the same number twice is a double registration). Matched: the whole name at
    or above `fuzzy_name_min_similarity`, and each half at or above `fuzzy_part_min_similarity`
    (a shared family name alone must not carry a match: ゴトウ リ and ゴトウ ナリコ are two people).

    The pairs are never listed: `kernels.fuzzy_identity_pairs` walks each block and returns the
    matches, so memory grows with the rows, not with the pairs (about 30k candidate pairs at 1M
    residents, 3.0M at 10M, 460M at 125M). A person key held by two rows (one My Number in two
    households) meets a partner once: the pass that met them first, then the smallest households
    and names, stand for the pair.
    """
    keys = keys.select(KEY_COLUMNS)
    shared_person_keys = _shared_person_keys(keys)
    rows = _row_arrays(keys, shared_person_keys)
    # (offsets, data, the Arrow array that owns them)
    strings = {c: similarity.string_buffers(keys.get_column(c).to_arrow()) for c in STRING_KEYS}
    numbers = range(1, len(BLOCKING_PASSES) + 1)
    # the passes' hashing runs on one core each (the kernel releases the GIL): side by side
    with ThreadPoolExecutor(max_workers=len(BLOCKING_PASSES)) as pool:
        blocked = list(pool.map(lambda number: _blocked(keys, rows, strings, number), numbers))
    passes = [_emitted_pairs(rows, strings, hashed, number, cfg) for number, hashed in zip(numbers, blocked)]
    emitted = pl.concat([pairs for pairs, _ in passes])
    compared = sum(count for _, count in passes)
    pairs = pl.concat([
        keys.select(pl.col(c).gather(emitted["row_l"]).alias(f"{c}_l") for c in CARRIED),
        keys.select(pl.col(c).gather(emitted["row_r"]).alias(f"{c}_r") for c in CARRIED),
        emitted.drop("row_l", "row_r"),
    ], how="horizontal")
    is_shared = (pl.col("person_key_l").is_in(shared_person_keys.implode())
                 | pl.col("person_key_r").is_in(shared_person_keys.implode()))
    # a shared person key's every compared pair came back, matched or not: one stands for each
    # person-key pair (the pair list's unique() kept whichever its join listed first)
    shared = (
        pairs.filter(is_shared)
        .sort("person_key_l", "person_key_r", "pass_number",
              *[f"{c}_{side}" for c in CARRIED[1:] for side in ("l", "r")])
        .unique(["person_key_l", "person_key_r"], keep="first", maintain_order=True)
    )
    matched = (
        pl.concat([pairs.filter(~is_shared), shared.filter(pl.col("is_matched"))])
        .sort("person_key_l", "person_key_r")
        .select(*[f"{c}_{side}" for c in CARRIED for side in ("l", "r")],
                "similarity", "family_similarity", "given_similarity")
    )
    return matched, compared + shared.height


def fuzzy_identities(members: pl.LazyFrame, cfg: ChecksConfig) -> tuple[pl.DataFrame, int]:
    """Households to hold for a fuzzy identity, with evidence (`held_households`); and the number
    of compared pairs."""
    return fuzzy_identities_from_keys(identity_keys(members).collect(), cfg)


def fuzzy_identities_from_keys(keys: pl.DataFrame, cfg: ChecksConfig) -> tuple[pl.DataFrame, int]:
    """`fuzzy_identities` on identity keys already built (`identity_keys(...).collect()`).

    Every block holds one birth date, so any split of the keys by birth date gives the same
    pairs, split the same way: a national run can call this once per birth-date bucket. Memory
    grows with the rows (the keys' string buffers, one pass's sorted hashes at a time, the
    matches), never with the candidate pairs. A household with members in two buckets gets a
    row from each.
    """
    missing = [c for c in KEY_COLUMNS if c not in keys.columns]
    if missing:
        msg = (f"fuzzy_identities_from_keys: keys lack the columns {missing}\n\n"
               "Hint: pass identity.identity_keys(members).collect().")
        raise EngineError(msg)
    matched, compared = matched_pairs(keys, cfg)
    return held_households(matched), compared


def held_households(matched: pl.DataFrame) -> pl.DataFrame:
    """One row per household holding a member of a cluster of matched pairs, with the evidence.

    Clusters come from union-find over the matched pairs, so three registrations of one person
    form one cluster; every household holding a member of a cluster is held.
    """
    if matched.is_empty():
        return pl.DataFrame(schema={"household_id": pl.Int64, "evidence": pl.String, "reason": pl.String})
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
    return held
