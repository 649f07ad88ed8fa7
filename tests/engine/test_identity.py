"""engine/identity.py on tiny literal registers: blocking, thresholds, clusters, evidence.

Members are built the way pipelines/nightly.py builds them: register rows (with their person_key)
through entitle.eligible_members. The blocking tests read the pairs the engine compares by
matching every compared pair (EVERY_PAIR), and check them against the candidate pairs of
tests/identity_reference.py; tests/engine/test_identity_kernel.py compares the two at scale.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from engine import entitle, identity
from engine.config import BenefitConfig, ChecksConfig
from identity_reference import candidate_pairs, reference_matched_pairs

# the near-identical mode these tests exercise (the defaults are stricter: see
# test_the_default_thresholds_match_normalised_equal_names_only)
CFG = ChecksConfig(fuzzy_name_min_similarity=0.90, fuzzy_part_min_similarity=0.80)
# thresholds of zero (below what ChecksConfig accepts): every compared pair is a match
EVERY_PAIR = ChecksConfig.model_construct(fuzzy_name_min_similarity=0.0, fuzzy_part_min_similarity=0.0)
BIRTH = date(1970, 7, 7)


def person(key: int, household: int, family: str, given: str, *, birth: date = BIRTH, sex: str = "M",
           my_number: int | None = None, eligible: bool = True, head: bool = True) -> dict:
    """A register row; the My Number is derived from the key unless given (it is never checked here)."""
    return {
        "person_key": key, "my_number": my_number if my_number is not None else 900_000_000_000 + key,
        "household_id": household, "is_head": head, "family_name_kana": family, "given_name_kana": given,
        "birth_date": birth, "sex": sex, "municipality_code": "131016",
        "registered_on": date(2000, 1, 1) if eligible else date(2020, 6, 1),  # after the basis date
        "moved_out_on": None, "died_on": None,
    }


def members(*rows: dict) -> pl.LazyFrame:
    register = pl.DataFrame(list(rows), schema_overrides={"moved_out_on": pl.Date, "died_on": pl.Date})
    declined = pl.LazyFrame(schema={"household_id": pl.Int64, "my_number": pl.Int64})
    return entitle.eligible_members(register.lazy(), declined, BenefitConfig())


def pairs_of(*rows: dict) -> set[tuple[int, int]]:
    """The pairs the engine compares (all of them match EVERY_PAIR), checked against the reference."""
    keys = identity.identity_keys(members(*rows)).collect()
    found, compared = identity.matched_pairs(keys, EVERY_PAIR)
    expected = candidate_pairs(keys.lazy()).collect()
    assert compared == found.height == expected.height
    assert found.select("person_key_l", "person_key_r").rows() == expected.select("person_key_l", "person_key_r").rows()
    return set(found.select("person_key_l", "person_key_r").iter_rows())


# --- normalisation --------------------------------------------------------------------------------


def test_name_key_folds_width_small_kana_long_vowel_and_spaces() -> None:
    names = pl.DataFrame({"name": ["ユーコ", "ﾕｳｺ", "キョウコ", "ｷｮｳｺ", "ヲサム", "オサム", "ヤマダ タロウ"]})
    keys = names.select(identity.name_key(pl.col("name")))["name"].to_list()
    assert keys[0] == keys[1]  # long vowel mark read as ウ; full and half width
    assert keys[2] == keys[3]  # small ョ as ヨ
    assert keys[4] == keys[5]  # ヲ as オ
    assert " " not in keys[6]


def test_identity_keys_keep_only_eligible_members() -> None:
    keys = identity.identity_keys(members(
        person(1, 1, "ヤマダ", "タロウ"), person(2, 2, "ヤマダ", "タロウ", eligible=False))).collect()
    assert keys["person_key"].to_list() == [1]
    assert keys["name_key"][0] == keys["family_key"][0] + keys["given_key"][0]


# --- blocking -------------------------------------------------------------------------------------


def test_same_birth_sex_and_family_name_meet() -> None:
    assert pairs_of(person(1, 1, "ヤマダ", "タロウ"), person(2, 2, "ヤマダ", "ジロウ")) == {(1, 2)}


def test_same_birth_sex_and_given_name_meet() -> None:
    # a family name changed (marriage) still meets its twin through the given name
    assert pairs_of(person(1, 1, "ヤマダ", "ハナコ", sex="F"), person(2, 2, "スズキ", "ハナコ", sex="F")) == {(1, 2)}


def test_blocks_compare_normalised_names() -> None:
    assert pairs_of(person(1, 1, "オオノ", "ヲサム"), person(2, 2, "ｵｵﾉ", "ｲｻﾑ")) == {(1, 2)}


@pytest.mark.parametrize("other", [
    {"birth": date(1970, 7, 8)},  # another birth date
    {"sex": "F"},  # another sex
    {"family": "スズキ", "given": "ジロウ"},  # neither name half shared
], ids=["birth_date", "sex", "names"])
def test_different_block_never_meets(other: dict) -> None:
    changed = person(2, 2, other.get("family", "ヤマダ"), other.get("given", "タロウ"),
                     birth=other.get("birth", BIRTH), sex=other.get("sex", "M"))
    assert pairs_of(person(1, 1, "ヤマダ", "タロウ"), changed) == set()


def test_same_household_is_skipped() -> None:
    # twins: one birth date, one family name, one household
    assert pairs_of(person(1, 1, "ヤマダ", "タロウ"), person(2, 1, "ヤマダ", "タロウ", head=False)) == set()


def test_same_my_number_is_skipped() -> None:
    # one My Number in two households is a double registration, not a fuzzy identity; the two rows
    # carry different person keys here so that only the My Number rule can drop the pair
    assert pairs_of(person(1, 1, "ヤマダ", "タロウ", my_number=123),
                    person(2, 2, "ヤマダ", "タロウ", my_number=123)) == set()


def test_ineligible_members_are_not_compared() -> None:
    assert pairs_of(person(1, 1, "ヤマダ", "タロウ"), person(2, 2, "ヤマダ", "タロウ", eligible=False)) == set()


def test_a_pair_in_both_blocks_is_listed_once_left_key_first() -> None:
    keys = identity.identity_keys(members(person(5, 1, "ヤマダ", "タロウ"), person(3, 2, "ヤマダ", "タロウ"))).collect()
    found, compared = identity.matched_pairs(keys, EVERY_PAIR)
    assert compared == 1
    assert found.select("person_key_l", "person_key_r").rows() == [(3, 5)]
    assert "my_number_l" not in found.columns and "my_number_r" not in found.columns


# --- thresholds -----------------------------------------------------------------------------------


def scored(family_l: str, given_l: str, family_r: str, given_r: str) -> pl.DataFrame:
    """Identity keys of two persons born the same day in two households, sharing a name half
    (so that a block meets them): person 1 named family_l + given_l, person 2 the other."""
    return pl.DataFrame({
        "person_key": [1, 2], "my_number": [901, 902], "household_id": [1, 2], "birth_date": [BIRTH, BIRTH],
        "sex": ["M", "M"], "family_key": [family_l, family_r], "given_key": [given_l, given_r],
        "name_key": [family_l + given_l, family_r + given_r],
    })


def matches(keys: pl.DataFrame, cfg: ChecksConfig) -> pl.DataFrame:
    """identity.matched_pairs' matches, checked against the reference's scoring."""
    found, compared = identity.matched_pairs(keys, cfg)
    assert compared == 1
    expected, _ = reference_matched_pairs(keys, cfg)
    assert found.equals(expected)
    return found


def test_one_letter_typo_matches() -> None:
    found = matches(scored("ﾔﾏﾀﾞ", "ﾀﾛｳ", "ﾔﾏﾀﾞ", "ﾀﾛ"), CFG)
    assert found.height == 1
    assert found["similarity"][0] >= CFG.fuzzy_name_min_similarity


def test_shared_family_name_alone_does_not_match() -> None:
    # ゴトウ リ and ゴトウ ナリコ: the whole name scores 0.94, the given names 0.56
    found = matches(scored("ｺﾞﾄｳ", "ﾘ", "ｺﾞﾄｳ", "ﾅﾘｺ"), CFG)
    assert found.is_empty()


def test_shared_given_name_alone_does_not_match() -> None:
    # イノ ジュンイチロウ and オノ ジュンイチロウ: the whole name scores 0.93, the family names 0.67
    assert matches(scored("ｲﾉ", "ｼﾞﾕﾝｲﾁﾛｳ", "ｵﾉ", "ｼﾞﾕﾝｲﾁﾛｳ"), CFG).is_empty()
    loose = CFG.model_copy(update={"fuzzy_part_min_similarity": 0.6})
    assert matches(scored("ｲﾉ", "ｼﾞﾕﾝｲﾁﾛｳ", "ｵﾉ", "ｼﾞﾕﾝｲﾁﾛｳ"), loose).height == 1


def test_thresholds_are_inclusive() -> None:
    pair = scored("ﾔﾏﾀﾞ", "ﾀﾛｳ", "ﾔﾏﾀﾞ", "ﾀﾛ")
    first = matches(pair, ChecksConfig(fuzzy_name_min_similarity=0.5, fuzzy_part_min_similarity=0.0))
    at = {"fuzzy_name_min_similarity": first["similarity"][0],
          "fuzzy_part_min_similarity": min(first["family_similarity"][0], first["given_similarity"][0])}
    assert matches(pair, ChecksConfig(**at)).height == 1
    above = {**at, "fuzzy_name_min_similarity": min(1.0, at["fuzzy_name_min_similarity"] + 1e-9)}
    assert matches(pair, ChecksConfig(**above)).is_empty()


def test_stranger_with_the_same_given_name_does_not_match() -> None:
    assert matches(scored("ﾔﾏﾀﾞ", "ﾊﾅｺ", "ｽｽﾞｷ", "ﾊﾅｺ"), CFG).is_empty()


# --- clusters and evidence --------------------------------------------------------------------------


def test_no_match_gives_an_empty_typed_frame_and_the_pair_count() -> None:
    held, compared = identity.fuzzy_identities(
        members(person(1, 1, "ヤマダ", "タロウ"), person(2, 2, "ヤマダ", "ジロウ")), CFG)
    assert compared == 1
    assert held.is_empty()
    assert held.schema == pl.Schema({"household_id": pl.Int64, "evidence": pl.String, "reason": pl.String})


def test_three_registrations_of_one_person_are_one_cluster() -> None:
    # 11 ~ 12 and 12 ~ 13 match; 11 and 13 do not meet in any block (family and given name both
    # differ), so only the union of the two matches puts them together
    register = members(
        person(11, 1, "ワタナベ", "ケンイチ"),
        person(12, 2, "ワタナベ", "ケンイチロウ"),
        person(13, 3, "ワタノベ", "ケンイチロウ"),
        person(14, 4, "スズキ", "イチロウ"),  # someone else, born the same day
    )
    held, compared = identity.fuzzy_identities(register, CFG)
    assert compared == 2
    assert held["household_id"].to_list() == [1, 2, 3]
    assert set(held["reason"]) == {"fuzzy_identity"}
    # one cluster: every held household names the same three persons and households
    assert held["evidence"].n_unique() == 1
    evidence = held["evidence"][0]
    assert "persons 11, 12, 13 look like one person" in evidence
    assert "in households 1, 2, 3" in evidence


def test_evidence_names_person_keys_never_my_numbers() -> None:
    register = members(
        person(1, 1, "オオノ", "ヲサム", my_number=123_456_789_012),
        person(2, 2, "ｵｵﾉ", "ｵｻﾑ", my_number=987_654_321_098),
    )
    held, _ = identity.fuzzy_identities(register, CFG)
    assert held["household_id"].to_list() == [1, 2]
    for text in held["evidence"]:
        assert "persons 1, 2" in text
        assert "123456789012" not in text and "987654321098" not in text


def test_two_clusters_stay_apart() -> None:
    register = members(
        person(1, 1, "ヤマダ", "タロウ"), person(2, 2, "ヤマダ", "タロ"),
        person(3, 3, "サトウ", "ハナコ", sex="F"), person(4, 4, "サトウ", "ハナ", sex="F"),
    )
    held, _ = identity.fuzzy_identities(register, CFG)
    evidence = dict(held.select("household_id", "evidence").iter_rows())
    assert evidence[1] == evidence[2] != evidence[3] == evidence[4]
    assert "persons 1, 2" in evidence[1] and "persons 3, 4" in evidence[3]


def test_a_household_in_two_clusters_names_both() -> None:
    register = members(
        person(1, 1, "ヤマダ", "タロウ"), person(2, 1, "サトウ", "ハナコ", sex="F", head=False),
        person(3, 2, "ヤマダ", "タロ"), person(4, 3, "サトウ", "ハナ", sex="F"),
    )
    held, _ = identity.fuzzy_identities(register, CFG)
    evidence = dict(held.select("household_id", "evidence").iter_rows())
    assert "persons 1, 3" in evidence[1] and "persons 2, 4" in evidence[1]


def keyed(family_l: str, given_l: str, family_r: str, given_r: str) -> pl.DataFrame:
    """scored() on the matching keys identity.name_key makes of the names as written."""
    keys = pl.select(*[identity.name_key(pl.lit(v)).alias(str(i))
                       for i, v in enumerate((family_l, given_l, family_r, given_r))]).row(0)
    return scored(*keys)


def test_the_default_thresholds_match_normalised_equal_names_only() -> None:
    strict = ChecksConfig()
    # the spellings the register produces for one name (long vowel, small kana, voicing) agree
    assert matches(keyed("コマツ", "ユー", "コマツ", "ユウ"), strict).height == 1
    assert matches(keyed("タカミ", "クキ", "タカミ", "グキ"), strict).height == 1
    assert matches(keyed("ヤマダ", "キョウコ", "ヤマダ", "キヨウコ"), strict).height == 1
    # a different letter is a different person at national scale (near collisions abound)
    assert matches(keyed("オオツカ", "ハルスミ", "オオツカ", "テルスミ"), strict).is_empty()
