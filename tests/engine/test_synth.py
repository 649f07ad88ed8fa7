"""Unit tests of the synthetic-data building blocks (engine/synth)."""

from __future__ import annotations

import dataclasses

import jaconv
import numpy as np
import polars as pl
import pytest

from engine import identity, kernels
from engine.synth import banking, faults, points, population, tables, vocabulary


def normalised(names: pl.Series) -> list[str]:
    return [jaconv.hira2kata(jaconv.h2z(n, kana=True)).replace(" ", "").replace("\u3000", "") for n in names]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("residents", [1, 2, 7, 1_000, 50_000])
def test_household_sizes_sum_to_the_residents(seed: int, residents: int) -> None:
    sizes = population.household_sizes(np.random.default_rng(seed), residents)
    assert sizes.sum() == residents
    assert sizes.min() >= 1
    assert sizes.max() <= 7


def test_household_sizes_meet_the_census_mean_and_single_share() -> None:
    sizes = population.household_sizes(np.random.default_rng(0), 1_000_000)
    assert abs(sizes.mean() - 2.21) < 0.02
    assert abs((sizes == 1).mean() - 0.38) < 0.005


def test_size_shares_sum_to_one_and_mean_is_documented() -> None:
    shares = tables.HOUSEHOLD_SIZE_SHARES
    assert sum(shares.values()) == pytest.approx(1.0)
    assert sum(k * v for k, v in shares.items()) == pytest.approx(tables.MEAN_HOUSEHOLD_SIZE)


def test_tables_match_the_research_totals() -> None:
    assert sum(tables.PREFECTURE_POPULATION_2020.values()) == 126_146_099
    assert sum(tables.AGE_BANDS_MALE) + sum(tables.AGE_BANDS_FEMALE) == 123_214_261


def test_ages_follow_the_pyramid() -> None:
    age, female = population.ages_and_sexes(np.random.default_rng(1), 500_000)
    assert abs((age < 15).mean() - 0.1214) < 0.003
    assert abs((age >= 65).mean() - 0.2868) < 0.003
    assert abs(female.mean() - 63_455_823 / 123_214_261) < 0.003
    assert age.max() < tables.OLDEST_AGE
    assert age.min() >= 0


def test_household_rows_put_an_adult_at_the_head_of_every_household() -> None:
    rng = np.random.default_rng(2)
    sizes = population.household_sizes(rng, 10_000)
    age, _ = population.ages_and_sexes(rng, 10_000)
    person_at = population.household_rows(rng, sizes, age)
    assert np.array_equal(np.sort(person_at), np.arange(10_000))
    start = np.cumsum(sizes) - sizes
    assert (age[person_at[start]] >= tables.ADULT_AGE).all()
    partners = start[sizes >= 2] + 1
    assert (age[person_at[partners]] >= tables.ADULT_AGE).mean() > 0.99


@pytest.mark.parametrize("seed", [0, 1, 2**40])
def test_my_numbers_are_valid_distinct_and_twelve_digits(seed: int) -> None:
    keys = np.r_[np.arange(200_000), population.SECOND_NUMBER_KEY_OFFSET + np.arange(1_000)].astype(np.int64)
    numbers = population.my_numbers(keys, seed)
    assert kernels.my_number_is_valid(numbers).all()
    assert np.unique(numbers).size == keys.size
    assert numbers.min() >= 10**11
    assert numbers.max() < 10**12


def test_my_number_permutation_is_a_bijection_on_a_small_span() -> None:
    # the same multiply-modulo code, checked exhaustively where that is affordable
    values = np.arange(10**6, dtype=np.int64)
    image = population._multiply_modulo(values, 7_777_777_777, 10**6 + 3)  # prime modulus
    assert np.unique(image).size == values.size
    big = np.array([9 * 10**10 - 1], dtype=np.int64)
    assert population._multiply_modulo(big, 89_999_999_999, 9 * 10**10)[0] == (
        (9 * 10**10 - 1) * 89_999_999_999) % (9 * 10**10)


def test_wrong_check_digits_are_always_wrong() -> None:
    numbers = population.my_numbers(np.arange(10_000, dtype=np.int64), 5)
    wrong = population.wrong_check_digits(np.random.default_rng(0), numbers)
    assert not kernels.my_number_is_valid(wrong).any()
    assert np.array_equal(wrong // 10, numbers // 10)


def test_dates_turn_no_day_into_null() -> None:
    series = population.dates(np.array([0, population.NO_DAY, tables.BASIS_DAY], dtype=np.int32))
    assert series.dtype == pl.Date
    assert series.to_list()[1] is None
    assert str(series[2]) == "2020-04-27"


@pytest.mark.parametrize(("name", "near"), [
    ("タロウ", "タロー"), ("ユウタ", "ユータ"), ("ショウ", "ショー"), ("キョウコ", "キョーコ"),
    ("チャコ", "チヤコ"), ("ハナコ", "バナコ"), ("アイ", "アイ"),
])
def test_near_spelling(name: str, near: str) -> None:
    assert vocabulary.near_spelling(name) == near


def test_name_vocabulary_is_katakana_with_frequencies() -> None:
    names = vocabulary.names()
    assert names.surname_katakana[0] == "サトウ"
    assert names.surname_katakana.is_unique().all()
    assert names.surname_probability.sum() == pytest.approx(1.0)
    katakana = set("".join(names.given_katakana.to_list() + names.surname_katakana.to_list()))
    assert all("\u30a1" <= ch <= "\u30fc" for ch in katakana)
    assert names.given_with_near_katakana.len() == 2 * names.given_count


def test_municipality_weights_rank_designated_cities_above_towns() -> None:
    weight = vocabulary.municipality_weight(["141003", "131016", "012025", "033014"])
    assert list(weight) == [tables.DESIGNATED_CITY_WEIGHT, tables.SPECIAL_WARD_WEIGHT,
                            tables.CITY_WEIGHT, tables.TOWN_WEIGHT]
    municipalities = vocabulary.municipalities()
    assert municipalities.code.len() == 1741
    codes = np.array([int(c) for c in municipalities.code], dtype=np.int64)
    assert kernels.municipality_code_is_valid(codes).all()
    tokyo = municipalities.probability[municipalities.code.str.starts_with("13").to_numpy()].sum()
    assert tokyo == pytest.approx(14_047_594 / 126_146_099)


def test_rank_within_counts_occurrences_per_key() -> None:
    keys = np.array([5, 3, 5, 5, 3, 9], dtype=np.int64)
    assert banking.rank_within(keys).tolist() == [0, 0, 1, 2, 1, 0]
    big = np.array([2**40, 1, 2**40], dtype=np.int64)
    assert banking.rank_within(big).tolist() == [0, 0, 1]


def test_account_numbers_are_distinct_within_a_branch_across_chunks() -> None:
    rng = np.random.default_rng(3)
    chunks = 4
    numbers = []
    for chunk in range(chunks):
        branch = rng.integers(0, 3, 5_000)
        for applications in (False, True):
            slots = banking.AccountSlots.for_chunk(chunk, chunks, applications)
            numbers.append(pl.DataFrame({"branch": branch, "number": banking.account_numbers(branch, slots)}))
    everything = pl.concat(numbers)
    assert everything["number"].str.contains(r"^\d{7}$").all()
    assert not everything.is_duplicated().any()


def test_account_numbers_refuse_to_overflow_their_slots() -> None:
    with pytest.raises(ValueError, match="chunk_households"):
        banking.account_numbers(np.zeros(11, dtype=np.int64), banking.AccountSlots(first=0, capacity=10))


def test_holder_names_are_written_variants_of_one_name() -> None:
    rng = np.random.default_rng(4)
    names = vocabulary.names()
    surname = np.zeros(2_000, dtype=np.int64)  # サトウ
    given = np.full(2_000, int((names.given_katakana == "タロウ").arg_true()[0]))
    written = banking.holder_names(rng, surname, given)
    assert set(written) == {"サトウ タロウ", "サトウ\u3000タロウ", "ｻﾄｳ ﾀﾛｳ", "さとう\u3000たろう"}
    assert set(normalised(written)) == {"サトウタロウ"}


def test_other_person_names_differ_in_both_parts() -> None:
    rng = np.random.default_rng(5)
    names = vocabulary.names()
    surname = rng.integers(0, names.surname_count, 5_000)
    given = rng.integers(0, names.given_count, 5_000)
    other_surname, other_given = banking.other_person_names(rng, surname, given)
    assert (names.surname_katakana.gather(other_surname) != names.surname_katakana.gather(surname)).all()
    assert (names.given_katakana.gather(other_given) != names.given_katakana.gather(given)).all()


def test_branches_weight_the_big_banks() -> None:
    branches = vocabulary.branches()
    share = pl.DataFrame({"bank": branches.bank_code[:-1], "p": branches.probability}).group_by("bank").agg(
        pl.col("p").sum())
    shares = dict(share.iter_rows())
    assert shares["9900"] == pytest.approx(0.20)
    assert shares["0005"] > shares["0036"] > 0
    assert branches.bank_code[branches.unknown_bank_index] == tables.UNKNOWN_BANK_CODE


def test_services_are_118_with_a_prepaid_majority() -> None:
    services = points.services(0)
    assert services.height == 118
    assert services["service_id"].to_list() == list(range(1, 119))
    assert 0.5 <= (services["kind"] == "prepaid").mean() <= 0.75
    assert services.equals(points.services(0))


def test_sorted_within_gives_ascending_uniform_times() -> None:
    rng = np.random.default_rng(6)
    counts = np.array([0, 1, 5, 1_000, 3])
    low = np.array([0, 10, 100, 0, 50], dtype=np.int64)
    high = np.array([5, 20, 200, 1_000_000, 50], dtype=np.int64)
    times = points.sorted_within(rng, counts, low, high)
    owner = np.repeat(np.arange(counts.size), counts)
    assert times.size == counts.sum()
    assert ((times >= low[owner]) & (times <= high[owner])).all()
    for group in range(counts.size):
        assert (np.diff(times[owner == group]) >= 0).all()
    assert abs(times[owner == 3].mean() - 500_000) < 30_000


def test_household_faults_are_disjoint_and_shared_groups_unrelated() -> None:
    rng = np.random.default_rng(7)
    register, households = population.people(rng, 100_000, 0, 7)
    rates = faults.FaultRates(**{name: 0.004 for name in faults.FaultRates.model_fields})
    planted = faults.household_faults(rng, households, rates)
    chosen = np.concatenate([v for k, v in vars(planted).items() if k != "shared_account_owner"])
    assert np.unique(chosen).size == chosen.size
    assert chosen.size > 500
    groups = pl.DataFrame({
        "owner": planted.shared_account_owner,
        "surname": households.surname[planted.shared_account],
        "municipality": households.municipality[planted.shared_account],
    }).group_by("owner").agg(pl.len(), pl.col("surname").n_unique(), pl.col("municipality").n_unique())
    assert groups["len"].is_between(3, 5).all()
    assert (groups["surname"] == groups["len"]).all()
    assert (groups["municipality"] == groups["len"]).all()
    members = households.size[np.concatenate([planted.invalid_my_number, planted.applicant_not_head])]
    assert (members >= 2).all()


def test_truth_rows_fill_absent_ids_with_null() -> None:
    frame = faults.truth_rows("unknown_bank", "accounts", np.array([1, 2]), np.array([3, 4]))
    assert frame.schema == faults.schemas.TRUTH_FAULTS.schema
    assert frame["wallet_id"].null_count() == 2


# --- namesakes: the truth of what the fuzzy identity check holds without a planted fault ---------

BIRTH_DAY = 0  # 1970-01-01


def register_of(*rows: tuple[int, str, str, int, str]) -> population.People:
    """Register rows (person_key, family kana, given kana, birth day, sex) as a People value; the
    kana are looked up in the vocabulary, as the spellings the residents file gets."""
    names = vocabulary.names()
    surnames, given_names = names.surname_katakana.to_list(), names.given_with_near_katakana.to_list()
    person_key, family, given, birth_on, sex = zip(*rows)
    empty = population.People(**{field.name: np.zeros(len(rows), dtype=np.int64)
                                 for field in dataclasses.fields(population.People)})
    return dataclasses.replace(
        empty,
        person_key=np.array(person_key, dtype=np.int64),
        surname=np.array([surnames.index(name) for name in family], dtype=np.int64),
        given_name=np.array([given_names.index(name) for name in given], dtype=np.int64),
        birth_on=np.array(birth_on, dtype=np.int32),
        is_female=np.array([s == "F" for s in sex]),
    )


def identities_of(*rows: tuple[int, int, str, str, int, str]) -> pl.DataFrame:
    """The identities frame pipelines/generate.py builds, for rows (person_key, household_id,
    family kana, given kana, birth day, sex); one person key, one My Number."""
    register = register_of(*[(key, *rest) for key, _, *rest in rows])
    return pl.DataFrame({
        "identity_key": population.identity_keys(register),
        "person_key": register.person_key,
        "my_number": population.my_numbers(register.person_key, 0),
        "household_id": np.array([household for _, household, *_ in rows], dtype=np.int64),
    })


def listed(namesakes: pl.DataFrame, identities: pl.DataFrame) -> set[tuple[int, int]]:
    """(person_key, household_id) of the truth's rows."""
    rows = namesakes.join(identities, on=["household_id", "my_number"])
    return set(zip(rows["person_key"], rows["household_id"]))


def test_identity_keys_are_equal_exactly_when_the_check_reads_one_name() -> None:
    rng = np.random.default_rng(8)
    register, households = population.people(rng, 20_000, 0, 8)
    names = vocabulary.names()
    surnames, given_names = names.surname_katakana.to_list(), names.given_with_near_katakana.to_list()
    # few names and days, so keys repeat; pairs one voiced mark apart (ナカジマ, ナガシマ), a
    # reading of both sexes (アイ), a near spelling (タロー)
    family = [surnames.index(name) for name in ("ナカジマ", "ナガシマ", "オカダ", "オガタ", "サトウ")]
    given = [given_names.index(name) for name in ("アイシ", "アイジ", "タロウ", "タロー")]
    given += [names.male_given_count + names.given_katakana[names.male_given_count:].to_list().index("アイ")]
    size = len(register)
    register = dataclasses.replace(
        register,
        surname=rng.choice(family, size), given_name=rng.choice(given, size),
        birth_on=rng.integers(BIRTH_DAY, BIRTH_DAY + 2, size).astype(np.int32),
    )
    residents = population.residents(register, households).select(
        "birth_date", "sex",
        family_key=identity.name_key(pl.col("family_name_kana")),
        given_key=identity.name_key(pl.col("given_name_kana")),
        identity_key=population.identity_keys(register),
    )
    check_key = ["family_key", "given_key", "birth_date", "sex"]
    groups = residents.select(pl.struct(check_key).n_unique().alias("check"), pl.col("identity_key").n_unique(),
                              pl.struct(*check_key, "identity_key").n_unique().alias("both"))
    assert groups.row(0) == (groups["both"][0],) * 3
    assert groups["both"][0] == 3 * 3 * 2 * 2  # family keys, given keys, days, sexes


def test_identity_keys_refuse_a_birth_day_they_cannot_pack() -> None:
    too_late = population.BIRTH_DAY_SPAN // 2
    with pytest.raises(OverflowError, match="birth days"):
        population.identity_keys(register_of((1, "サトウ", "タロウ", too_late, "M")))


def test_namesakes_are_other_persons_of_the_same_sex_in_other_households() -> None:
    offset = population.SECOND_NUMBER_KEY_OFFSET
    identities = identities_of(
        (1, 10, "ナカジマ", "アイシ", BIRTH_DAY, "M"),
        (2, 20, "ナガシマ", "アイジ", BIRTH_DAY, "M"),  # equal once voiced marks are dropped
        (3, 30, "ナカジマ", "アイシ", BIRTH_DAY, "F"),  # the other sex
        (4, 31, "ナカジマ", "アイシ", BIRTH_DAY + 1, "M"),  # another day
        (5, 40, "ヤマダ", "タロウ", BIRTH_DAY, "M"),
        (6, 40, "ヤマダ", "タロウ", BIRTH_DAY, "M"),  # twins: one household
        (7, 50, "サトウ", "ユウタ", BIRTH_DAY, "M"),
        (offset + 7, 60, "サトウ", "ユータ", BIRTH_DAY, "M"),  # a planted fuzzy duplicate of 7
        (8, 70, "サトウ", "ハナコ", BIRTH_DAY, "F"),
        (8, 80, "サトウ", "ハナコ", BIRTH_DAY, "F"),  # one My Number in two households
    )
    namesakes = faults.coincidental_namesakes(identities)
    assert namesakes.schema == faults.schemas.TRUTH_FAULTS.schema
    assert set(namesakes["fault"]) == {"coincidental_namesake"}
    assert listed(namesakes, identities) == {(1, 10), (2, 20)}


def test_a_third_person_makes_namesakes_of_a_duplicate_listed_once() -> None:
    offset = population.SECOND_NUMBER_KEY_OFFSET
    identities = identities_of(
        (7, 50, "サトウ", "ユウタ", BIRTH_DAY, "M"),
        (offset + 7, 60, "サトウ", "ユータ", BIRTH_DAY, "M"),
        (9, 55, "サトウ", "ユウタ", BIRTH_DAY, "M"),  # a namesake of 7 and of 7's second registration
        (8, 80, "サトウ", "ハナコ", BIRTH_DAY, "F"),
        (8, 70, "サトウ", "ハナコ", BIRTH_DAY, "F"),
        (10, 75, "サトウ", "ハナコ", BIRTH_DAY, "F"),  # 8 is listed once, in its smallest household
        (11, 100, "ヤマダ", "タロウ", BIRTH_DAY, "M"),
        (11, 110, "ヤマダ", "タロウ", BIRTH_DAY, "M"),
        (12, 100, "ヤマダ", "タロウ", BIRTH_DAY, "M"),  # 11's smallest household is 12's own
    )
    assert listed(faults.coincidental_namesakes(identities), identities) == {
        (7, 50), (offset + 7, 60), (9, 55), (8, 70), (10, 75), (11, 110), (12, 100)}
