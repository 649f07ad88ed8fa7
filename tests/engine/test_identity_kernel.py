"""engine.identity.matched_pairs (the block-walking kernel) against tests/identity_reference.py
(the old Polars joins that list every candidate pair): the same matched pairs, column for column
and bit for bit, and the same number of compared pairs, on generated registers and on hand-made
edge cases. Random inputs are seeded; a failure names the seed that reproduces it.
"""

from __future__ import annotations

from datetime import date, timedelta

import numba
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from engine import identity, kernels, similarity
from engine.config import ChecksConfig
from engine.errors import EngineError
from identity_reference import candidate_pairs, reference_matched_pairs
from pipelines import generate

STRICT = ChecksConfig()  # the defaults: 0.98 / 0.95
LOOSE = ChecksConfig(fuzzy_name_min_similarity=0.90, fuzzy_part_min_similarity=0.80)
# every compared pair matches: the matched pairs are then exactly the candidate pairs
EVERY_PAIR = ChecksConfig.model_construct(fuzzy_name_min_similarity=0.0, fuzzy_part_min_similarity=0.0)
CONFIGS = {"strict": STRICT, "loose": LOOSE, "every_pair": EVERY_PAIR}
BIRTH = date(1970, 7, 7)
KEY_SCHEMA = {"person_key": pl.Int64, "my_number": pl.Int64, "household_id": pl.Int64, "birth_date": pl.Date,
              "sex": pl.String, "family_key": pl.String, "given_key": pl.String, "name_key": pl.String}


def assert_same_as_reference(keys: pl.DataFrame, cfg: ChecksConfig) -> pl.DataFrame:
    """The kernel's matched pairs and compared count equal the reference's; returns the pairs."""
    matched, compared = identity.matched_pairs(keys, cfg)
    expected, expected_compared = reference_matched_pairs(keys, cfg)
    assert compared == expected_compared
    assert_frame_equal(matched, expected, check_exact=True)
    held, held_compared = identity.fuzzy_identities_from_keys(keys, cfg)
    assert held_compared == expected_compared
    assert_frame_equal(held, identity.held_households(expected))
    return matched


def key(person: int, household: int, family: str | None, given: str | None, *, birth: date | None = BIRTH,
        sex: str | None = "M", my_number: int | None = None) -> dict:
    """One identity-keys row of already normalised names; the My Number follows the person key."""
    return {"person_key": person, "my_number": 900_000_000_000 + person if my_number is None else my_number,
            "household_id": household, "birth_date": birth, "sex": sex, "family_key": family, "given_key": given,
            "name_key": None if family is None or given is None else family + given}


def keys_of(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=KEY_SCHEMA)


def pairs(frame: pl.DataFrame) -> list[tuple[int, int]]:
    return frame.select("person_key_l", "person_key_r").rows()


# --- generated registers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated_keys(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """Identity keys of a generated register (30k residents with the generator's planted duplicates,
    double registrations among them), every resident eligible, person keys by My Number."""
    inputs = tmp_path_factory.mktemp("identity") / "inputs"
    generate.generate(residents=30_000, seed=3, out=inputs)
    residents = pl.read_parquet(inputs / "residents")
    members = residents.with_columns(
        is_eligible=pl.lit(True), person_key=pl.col("my_number").rank("dense").cast(pl.Int64))
    return identity.identity_keys(members.lazy()).collect()


@pytest.mark.parametrize("config", list(CONFIGS))
def test_generated_register_matches_the_reference(generated_keys: pl.DataFrame, config: str) -> None:
    matched = assert_same_as_reference(generated_keys, CONFIGS[config])
    assert matched.height > 0
    assert generated_keys["person_key"].is_duplicated().any()  # shared person keys are exercised


@pytest.mark.parametrize("config", list(CONFIGS))
def test_generated_register_in_month_blocks_matches_the_reference(generated_keys: pl.DataFrame, config: str) -> None:
    # birth dates rounded to the month: blocks about 30 times bigger, many more pairs per block
    keys = generated_keys.with_columns(pl.col("birth_date").dt.truncate("1mo"))
    assert_same_as_reference(keys, CONFIGS[config])
    assert candidate_pairs(keys.lazy()).collect().height > 5 * candidate_pairs(generated_keys.lazy()).collect().height


def test_birth_date_buckets_add_up_to_the_whole(generated_keys: pl.DataFrame) -> None:
    # what a national run does: one call per birth-date bucket
    keys = generated_keys.with_columns(pl.col("birth_date").dt.truncate("1mo"))
    whole, compared = identity.matched_pairs(keys, LOOSE)
    parts = [identity.matched_pairs(keys.filter(pl.col("birth_date").cast(pl.Int64) % 4 == bucket), LOOSE)
             for bucket in range(4)]
    assert sum(count for _, count in parts) == compared
    assert_frame_equal(pl.concat([frame for frame, _ in parts]).sort("person_key_l", "person_key_r"), whole)


def test_the_thread_count_does_not_change_the_result(generated_keys: pl.DataFrame) -> None:
    keys = generated_keys.with_columns(pl.col("birth_date").dt.truncate("1mo"))
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        alone = identity.matched_pairs(keys, EVERY_PAIR)
    finally:
        numba.set_num_threads(threads)
    shared = identity.matched_pairs(keys, EVERY_PAIR)
    assert alone[1] == shared[1]
    assert_frame_equal(alone[0], shared[0], check_exact=True)


# --- seeded random registers: few names, many collisions, nulls ------------------------------------


FAMILIES = ["ﾔﾏﾀﾞ", "ﾔﾏﾀ", "ｻﾄｳ", "ｻﾄｵ", "ｽｽﾞｷ", "ｲﾉ", "ｵﾉ", "ﾜﾀﾅﾍﾞ", "ﾜﾀﾉﾍﾞ", ""]
GIVENS = ["ﾀﾛｳ", "ﾀﾛ", "ﾊﾅｺ", "ﾊﾅ", "ｹﾝｲﾁ", "ｹﾝｲﾁﾛｳ", "ﾘ", "ﾅﾘｺ", "ｼﾞﾕﾝｲﾁﾛｳ", ""]


def random_keys(seed: int, rows: int = 400) -> pl.DataFrame:
    """Identity keys from small pools, so blocks are big and near names common: shared person keys
    (with their My Number, in other households), shared My Numbers under other person keys, shared
    households, and ~3% nulls in every column."""
    rng = np.random.default_rng(seed)
    person = rng.integers(1, rows, rows)
    my_number = np.where(rng.random(rows) < 0.05, rng.integers(1, 20, rows), 900_000_000_000 + person)
    frame = pl.DataFrame({
        "person_key": person, "my_number": my_number, "household_id": rng.integers(1, rows // 4, rows),
        "birth_date": [BIRTH + timedelta(days=int(d)) for d in rng.integers(0, 3, rows)],
        "sex": rng.choice(["M", "F"], rows), "family_key": rng.choice(FAMILIES, rows),
        "given_key": rng.choice(GIVENS, rows),
    }).with_columns(name_key=pl.col("family_key") + pl.col("given_key"))
    # a whole name that is not the two halves joined: the kernel must score the column as given
    frame = frame.with_columns(name_key=pl.when(pl.Series(rng.random(rows) < 0.05))
                               .then(pl.col("given_key") + pl.col("family_key")).otherwise("name_key"))
    return frame.with_columns(
        pl.when(pl.Series(rng.random(rows) < 0.03)).then(None).otherwise(pl.col(c)).alias(c) for c in KEY_SCHEMA
    ).select(list(KEY_SCHEMA))


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("seed", range(12))
def test_random_register_matches_the_reference(seed: int, config: str) -> None:
    assert_same_as_reference(random_keys(seed), CONFIGS[config])


# --- hand-made edge cases ------------------------------------------------------------------------------


def test_empty_keys_give_no_pairs_and_typed_frames() -> None:
    keys = pl.DataFrame(schema=KEY_SCHEMA)
    matched = assert_same_as_reference(keys, LOOSE)
    assert matched.is_empty()
    held, compared = identity.fuzzy_identities_from_keys(keys, LOOSE)
    assert compared == 0
    assert held.schema == pl.Schema({"household_id": pl.Int64, "evidence": pl.String, "reason": pl.String})


def test_blocks_of_one_row_compare_nothing() -> None:
    keys = keys_of(key(1, 1, "ﾔﾏﾀﾞ", "ﾀﾛｳ"), key(2, 2, "ｻﾄｳ", "ﾊﾅｺ"),
                   key(3, 3, "ﾔﾏﾀﾞ", "ﾀﾛｳ", sex="F"), key(4, 4, "ﾔﾏﾀﾞ", "ﾀﾛｳ", birth=date(1970, 7, 8)))
    assert assert_same_as_reference(keys, EVERY_PAIR).is_empty()
    assert identity.matched_pairs(keys, EVERY_PAIR)[1] == 0


def test_twins_in_one_household_are_not_compared() -> None:
    keys = keys_of(key(1, 1, "ﾔﾏﾀﾞ", "ﾀﾛｳ"), key(2, 1, "ﾔﾏﾀﾞ", "ﾀﾛｳ"))
    assert assert_same_as_reference(keys, EVERY_PAIR).is_empty()
    assert identity.matched_pairs(keys, EVERY_PAIR)[1] == 0


def test_one_my_number_in_two_households_is_not_compared() -> None:
    keys = keys_of(key(1, 1, "ﾔﾏﾀﾞ", "ﾀﾛｳ", my_number=123), key(2, 2, "ﾔﾏﾀﾞ", "ﾀﾛｳ", my_number=123))
    assert assert_same_as_reference(keys, EVERY_PAIR).is_empty()
    assert identity.matched_pairs(keys, EVERY_PAIR)[1] == 0


def test_identical_names_are_compared_once_though_both_passes_meet_them() -> None:
    keys = keys_of(key(5, 1, "ﾔﾏﾀﾞ", "ﾀﾛｳ"), key(3, 2, "ﾔﾏﾀﾞ", "ﾀﾛｳ"))
    matched = assert_same_as_reference(keys, STRICT)
    assert pairs(matched) == [(3, 5)]
    assert matched.row(0, named=True)["similarity"] == 1.0
    assert identity.matched_pairs(keys, STRICT)[1] == 1


def test_a_name_changed_only_in_the_given_half_meets_through_the_family_block() -> None:
    keys = keys_of(key(1, 1, "ﾔﾏﾀﾞ", "ﾀﾛｳ"), key(2, 2, "ﾔﾏﾀﾞ", "ﾀﾛ"))
    assert pairs(assert_same_as_reference(keys, LOOSE)) == [(1, 2)]


def test_a_name_changed_only_in_the_family_half_meets_through_the_given_block() -> None:
    keys = keys_of(key(1, 1, "ﾜﾀﾅﾍﾞ", "ｹﾝｲﾁﾛｳ"), key(2, 2, "ﾜﾀﾉﾍﾞ", "ｹﾝｲﾁﾛｳ"))
    matched = assert_same_as_reference(keys, LOOSE)
    assert pairs(matched) == [(1, 2)]
    assert matched["family_similarity"][0] < 1.0


def test_three_registrations_of_one_person_form_one_cluster() -> None:
    # 11 ~ 12 (same family) and 12 ~ 13 (same given) match; 11 and 13 share no block
    keys = keys_of(key(11, 1, "ﾜﾀﾅﾍﾞ", "ｹﾝｲﾁ"), key(12, 2, "ﾜﾀﾅﾍﾞ", "ｹﾝｲﾁﾛｳ"),
                   key(13, 3, "ﾜﾀﾉﾍﾞ", "ｹﾝｲﾁﾛｳ"), key(14, 4, "ｽｽﾞｷ", "ｲﾁﾛｳ"))
    assert pairs(assert_same_as_reference(keys, LOOSE)) == [(11, 12), (12, 13)]
    held, compared = identity.fuzzy_identities_from_keys(keys, LOOSE)
    assert compared == 2
    assert held["household_id"].to_list() == [1, 2, 3]
    assert held["evidence"].n_unique() == 1
    assert "persons 11, 12, 13 look like one person" in held["evidence"][0]


def test_a_person_key_in_two_households_meets_its_partner_once() -> None:
    # person 7 is registered in households 2 and 9 (one My Number twice); both rows meet person 3:
    # one pair, counted once, in the smaller household
    keys = keys_of(key(7, 9, "ﾔﾏﾀﾞ", "ﾀﾛｳ"), key(3, 1, "ﾔﾏﾀﾞ", "ﾀﾛ"), key(7, 2, "ﾔﾏﾀﾞ", "ﾀﾛｳ"))
    matched = assert_same_as_reference(keys, LOOSE)
    assert matched.select("person_key_l", "person_key_r", "household_id_l", "household_id_r").rows() == [(3, 7, 1, 2)]
    assert identity.matched_pairs(keys, LOOSE)[1] == 1


def test_a_shared_person_key_is_represented_by_the_pass_that_met_it_first() -> None:
    # person 7's row in household 2 meets person 3 only through the given name (pass 2), its row in
    # household 9 through the family name (pass 1): the pass-1 row stands for the pair, and there
    # the given names differ too much to match
    keys = keys_of(key(7, 9, "ﾔﾏﾀﾞ", "ﾅﾘｺ"), key(3, 1, "ﾔﾏﾀﾞ", "ﾀﾛｳ"), key(7, 2, "ｻﾄｳ", "ﾀﾛｳ"))
    assert assert_same_as_reference(keys, LOOSE).is_empty()
    assert identity.matched_pairs(keys, LOOSE)[1] == 1


def test_null_keys_never_meet_but_null_names_are_still_counted() -> None:
    keys = keys_of(
        key(1, 1, "ﾔﾏﾀﾞ", "ﾀﾛｳ"), key(2, 2, None, "ﾀﾛｳ"),  # 2 meets 1 and 8 by the given name only
        key(3, 3, "ﾔﾏﾀﾞ", None), key(4, 4, "ﾔﾏﾀﾞ", "ﾀﾛ", birth=None), key(5, 5, "ﾔﾏﾀﾞ", "ﾀﾛ", sex=None),
        key(6, None, "ﾔﾏﾀﾞ", "ﾀﾛｳ"), {**key(7, 7, "ﾔﾏﾀﾞ", "ﾀﾛｳ"), "my_number": None},
        {**key(8, 8, "ﾔﾏﾀﾞ", "ﾀﾛｳ"), "name_key": None},
    )
    matched = assert_same_as_reference(keys, EVERY_PAIR)
    assert pairs(matched) == []  # 1 and 8 meet, but a null whole name never matches
    # compared: 1, 3, 8 by the family name (3 pairs); 1, 2, 8 by the given name (2 more)
    assert identity.matched_pairs(keys, EVERY_PAIR)[1] == candidate_pairs(keys.lazy()).collect().height == 5


def test_keys_without_a_column_are_refused_with_a_hint() -> None:
    with pytest.raises(EngineError, match="lack the columns \\['sex'\\]"):
        identity.fuzzy_identities_from_keys(keys_of(key(1, 1, "ﾔﾏﾀﾞ", "ﾀﾛｳ")).drop("sex"), LOOSE)


# --- the kernels themselves -----------------------------------------------------------------------------


def string_buffers(values: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    offsets, data, _ = similarity.string_buffers(pl.Series(values, dtype=pl.String).to_arrow())
    return offsets, data.copy()


@pytest.mark.parametrize("seed", range(5))
def test_key_codes_are_equal_exactly_for_equal_sex_and_key(seed: int) -> None:
    # 3,000 distinct keys: the code table grows several times
    rng = np.random.default_rng(seed)
    rows = 20_000
    sexes = rng.choice(["M", "F", "X"], rows).tolist()
    keys = [f"ｶ{int(k)}" for k in rng.integers(0, 1_000, rows)]
    can_meet = rng.random(rows) < 0.9
    _, codes = kernels.block_hashed_rows(
        np.zeros(rows, dtype=np.int64), *string_buffers(sexes), *string_buffers(keys), can_meet)
    assert (codes[~can_meet] == -1).all()
    seen: dict[tuple[str, str], int] = {}
    for sex, name, code, meets in zip(sexes, keys, codes.tolist(), can_meet.tolist()):
        if meets:
            assert seen.setdefault((sex, name), code) == code
    assert len(set(seen.values())) == len(seen)


def test_rows_whose_hashes_collide_meet_only_their_own_block() -> None:
    # every row given the same hash: one run holding three blocks; pairs across blocks never meet
    keys = keys_of(key(1, 1, "ﾔﾏﾀﾞ", "ﾀﾛｳ"), key(2, 2, "ﾔﾏﾀﾞ", "ﾀﾛ"), key(3, 3, "ｻﾄｳ", "ﾀﾛｳ"),
                   key(4, 4, "ﾔﾏﾀﾞ", "ﾀﾛｳ", sex="F"), key(5, 5, "ﾔﾏﾀﾞ", "ﾀﾛｳ", birth=date(1970, 7, 8)),
                   key(6, 6, "ｻﾄｳ", "ﾀﾛ"))
    birth = keys["birth_date"].cast(pl.Int64).to_numpy()
    family = string_buffers(keys["family_key"].to_list())
    given = string_buffers(keys["given_key"].to_list())
    name = string_buffers(keys["name_key"].to_list())
    _, codes = kernels.block_hashed_rows(birth, *string_buffers(keys["sex"].to_list()), *family,
                                         np.ones(keys.height, dtype=bool))
    every_row_one_hash = np.arange(keys.height, dtype=np.int64)  # the high bits are all zero
    ids = {c: keys[c].to_numpy() for c in ("person_key", "my_number", "household_id")}
    flags = np.full(keys.height, kernels.SCORABLE | kernels.FAMILY_IS_SET, dtype=np.int64)
    left, right, *_, compared = kernels.fuzzy_identity_pairs(
        every_row_one_hash, birth, codes, ids["person_key"], ids["my_number"], ids["household_id"], flags,
        False, *family, *given, *name, 0.0, 0.0)
    assert sorted(zip(left.tolist(), right.tolist())) == [(0, 1), (2, 5)]
    assert compared == 2


def test_the_kernel_refuses_unsorted_hashed_rows() -> None:
    offsets = np.zeros(3, dtype=np.int64)
    data = np.empty(0, dtype=np.uint8)
    two = np.array([1, 2], dtype=np.int64)
    with pytest.raises(ValueError, match="sorted"):
        kernels.fuzzy_identity_pairs(np.array([1, 0], dtype=np.int64), two, two, two, two, two, two, False,
                                     offsets, data, offsets, data, offsets, data, 0.9, 0.8)
