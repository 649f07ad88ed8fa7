"""Synthetic residents: households, ages, names, municipalities and My Numbers (research §7).

A chunk of the register is a `People` value: numpy arrays, one entry per resident record, in
household order (head first). Strings are indices into `vocabulary`; dates are days since 1970.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from engine import identity, kernels, schemas
from engine.synth import tables, vocabulary

NO_DAY = np.iinfo(np.int32).min  # stands for a null date until the frame is built
MY_NUMBER_LOW = 10**10  # bases start at 10^10 so that every My Number has 12 significant digits
MY_NUMBER_SPAN = 9 * 10**10
# persons registered twice under a second number (fuzzy duplicates) get keys above every real one
SECOND_NUMBER_KEY_OFFSET = 5 * 10**10
DAYS_PER_YEAR = 365.2425


@dataclass(frozen=True)
class Households:
    household_id: np.ndarray  # int64, global: 1 + global index of the head's row
    start: np.ndarray  # int64, row of the head in People
    size: np.ndarray  # int64, members (planted copies not counted)
    municipality: np.ndarray  # int64 index into vocabulary.municipalities()
    surname: np.ndarray  # int64 index into vocabulary.names() surnames

    def __len__(self) -> int:
        return self.household_id.size


@dataclass(frozen=True)
class People:
    person_key: np.ndarray  # int64 global key the My Number derives from
    my_number: np.ndarray  # int64
    household: np.ndarray  # int64 index into Households
    is_head: np.ndarray  # bool
    age_years: np.ndarray  # float64 age on the basis date
    is_female: np.ndarray  # bool
    surname: np.ndarray  # int64
    given_name: np.ndarray  # int64
    birth_on: np.ndarray  # int32 days
    registered_on: np.ndarray  # int32 days
    moved_out_on: np.ndarray  # int32 days or NO_DAY
    died_on: np.ndarray  # int32 days or NO_DAY
    is_planted: np.ndarray  # bool: a planted faulty row or copy (no account, no wallet)

    def __len__(self) -> int:
        return self.my_number.size


def household_sizes(rng: np.random.Generator, residents: int) -> np.ndarray:
    """Household sizes drawn from HOUSEHOLD_SIZE_SHARES, summing to exactly `residents`."""
    values = np.array(list(tables.HOUSEHOLD_SIZE_SHARES), dtype=np.int64)
    shares = np.array(list(tables.HOUSEHOLD_SIZE_SHARES.values()))
    draws = np.empty(0, dtype=np.int64)
    while draws.sum() < residents:  # one round but for tiny chunks: 0.5 draws/resident ≈ 1.1 residents
        draws = np.concatenate([draws, rng.choice(values, size=residents // 2 + 64, p=shares)])
    total = np.cumsum(draws)
    last = int(np.searchsorted(total, residents))
    sizes = draws[: last + 1].copy()
    sizes[last] -= total[last] - residents
    return sizes


def ages_and_sexes(rng: np.random.Generator, residents: int) -> tuple[np.ndarray, np.ndarray]:
    """Age on the basis date (years, fractional) and is_female, from the 2020 census pyramid."""
    counts = np.array(tables.AGE_BANDS_MALE + tables.AGE_BANDS_FEMALE, dtype=np.float64)
    bands = len(tables.AGE_BANDS_MALE)
    cell = rng.choice(counts.size, size=residents, p=counts / counts.sum())
    band = cell % bands
    within = rng.random(residents) * 5.0
    oldest_extra = np.minimum(
        rng.exponential(tables.OLDEST_BAND_MEAN_EXTRA_YEARS, residents),
        tables.OLDEST_AGE - tables.OLDEST_BAND_FROM_AGE - 1e-6,
    )
    age = np.where(band == bands - 1, tables.OLDEST_BAND_FROM_AGE + oldest_extra, band * 5.0 + within)
    return age, cell >= bands


def household_rows(rng: np.random.Generator, sizes: np.ndarray, age_years: np.ndarray) -> np.ndarray:
    """For each row of the register in household order, which drawn person sits there.

    Row 0 of a household is its head: a random adult. Row 1 (households of 2+) is a partner: an
    adult matched by rank on a noisy age to the head. Rows 2+ take everyone else (children, and
    the older relatives of three-generation homes), also rank-matched on age, so the oldest heads
    live with the oldest others.
    """
    residents, count = age_years.size, sizes.size
    start = np.cumsum(sizes) - sizes
    household_of_row = np.repeat(np.arange(count), sizes)
    slot = np.arange(residents) - start[household_of_row]
    shuffled = rng.permutation(residents)
    adults_first = shuffled[np.argsort(age_years[shuffled] < tables.ADULT_AGE, kind="stable")]
    multi = np.flatnonzero(sizes >= 2)
    heads = adults_first[:count]
    partners = adults_first[count : count + multi.size]
    others = adults_first[count + multi.size :]
    head_key = age_years[heads] + rng.normal(0.0, 5.0, count)
    person_at = np.empty(residents, dtype=np.int64)
    person_at[start] = heads
    # stable sorts: the rows of one household share its head's key, and an unstable sort breaks
    # such ties by the CPU's sorting code (numpy's AVX-512 and AVX2 sorts differ), so the same
    # seed gave other files on another machine (tests/pipelines/test_generate.py)
    person_at[start[multi[np.argsort(head_key[multi], kind="stable")]] + 1] = partners[
        np.argsort(age_years[partners] + rng.normal(0.0, 5.0, partners.size), kind="stable")
    ]
    other_rows = np.flatnonzero(slot >= 2)
    person_at[other_rows[np.argsort(head_key[household_of_row[other_rows]], kind="stable")]] = (
        others[np.argsort(age_years[others] + rng.normal(0.0, 5.0, others.size), kind="stable")]
    )
    return person_at


def _multiply_modulo(values: np.ndarray, multiplier: int, modulus: int) -> np.ndarray:
    """(values · multiplier) mod modulus without int64 overflow (values, multiplier < 10^11)."""
    high, low = divmod(multiplier, 10**6)
    return ((values * high) % modulus * 10**6 % modulus + values * low) % modulus


def my_number_permutation(seed: int) -> tuple[int, int]:
    """Multiplier (coprime to the span) and offset of the seed's affine bijection of keys."""
    rng = np.random.default_rng([seed, 0x4D59])
    multiplier = int(rng.integers(10**9, MY_NUMBER_SPAN))
    while math.gcd(multiplier, MY_NUMBER_SPAN) != 1:
        multiplier += 1
    return multiplier, int(rng.integers(0, MY_NUMBER_SPAN))


def my_numbers(person_keys: np.ndarray, seed: int) -> np.ndarray:
    """Valid, distinct 12-digit My Numbers: an affine bijection of the keys mod 9·10^10, then
    the check digit (research §3.1). Keys must be distinct and below 9·10^10."""
    multiplier, offset = my_number_permutation(seed)
    base = MY_NUMBER_LOW + (_multiply_modulo(person_keys, multiplier, MY_NUMBER_SPAN) + offset) % MY_NUMBER_SPAN
    return base * 10 + kernels.my_number_check_digits(base)


def wrong_check_digits(rng: np.random.Generator, my_number: np.ndarray) -> np.ndarray:
    """The same numbers with a check digit that is certainly wrong."""
    check = my_number % 10
    return my_number - check + (check + rng.integers(1, 10, my_number.size)) % 10


def natural_deaths(rng: np.random.Generator, age_years: np.ndarray) -> np.ndarray:
    """died_on (or NO_DAY): ≈1% die between the basis date and 2021-12-31, the old more likely."""
    hazard = np.exp(age_years / tables.DEATH_HAZARD_YEARS)
    probability = np.minimum(tables.NATURAL_DEATH_SHARE * hazard / hazard.mean(), 0.5)
    dies = rng.random(age_years.size) < probability
    day = tables.BASIS_DAY + rng.integers(0, tables.DEATHS_TO_DAY - tables.BASIS_DAY + 1, age_years.size)
    return np.where(dies, day, NO_DAY).astype(np.int32)


def people(rng: np.random.Generator, residents: int, first_key: int, seed: int) -> tuple[People, Households]:
    """A chunk of `residents` register rows in households; keys first_key .. first_key+residents-1."""
    names = vocabulary.names()
    municipalities = vocabulary.municipalities()
    sizes = household_sizes(rng, residents)
    drawn_age, drawn_female = ages_and_sexes(rng, residents)
    person_at = household_rows(rng, sizes, drawn_age)
    age, is_female = drawn_age[person_at], drawn_female[person_at]
    count = sizes.size
    start = np.cumsum(sizes) - sizes
    household = np.repeat(np.arange(count), sizes)
    is_head = np.zeros(residents, dtype=bool)
    is_head[start] = True
    # tiny chunks may lack adults: a head is always an adult
    age = np.where(is_head & (age < tables.ADULT_AGE), tables.ADULT_AGE + 10.0 * rng.random(residents), age)
    # ceil: an age of exactly 18.0 years is a birth on 2002-04-27, an adult on the basis date
    birth_on = (tables.BASIS_DAY - np.ceil(age * DAYS_PER_YEAR)).astype(np.int32)
    born_here = rng.random(residents) < 0.4
    # a move-in day from birth to the day before the basis date (a newborn of the basis date: that day)
    moved_in = birth_on + np.floor(rng.random(residents) * np.maximum(tables.BASIS_DAY - birth_on, 1))
    surname = rng.choice(names.surname_count, size=count, p=names.surname_probability)
    male_given = rng.integers(0, names.male_given_count, residents)
    female_given = rng.integers(names.male_given_count, names.given_count, residents)
    keys = first_key + np.arange(residents, dtype=np.int64)
    households = Households(
        household_id=keys[start] + 1,
        start=start,
        size=sizes,
        municipality=rng.choice(municipalities.code.len(), size=count, p=municipalities.probability),
        surname=surname,
    )
    register = People(
        person_key=keys,
        my_number=my_numbers(keys, seed),
        household=household,
        is_head=is_head,
        age_years=age,
        is_female=is_female,
        surname=surname[household],
        given_name=np.where(is_female, female_given, male_given),
        birth_on=birth_on,
        registered_on=np.where(born_here, birth_on, moved_in).astype(np.int32),
        moved_out_on=np.full(residents, NO_DAY, dtype=np.int32),
        died_on=natural_deaths(rng, age),
        is_planted=np.zeros(residents, dtype=bool),
    )
    return register, households


@functools.cache
def name_key_ids() -> tuple[np.ndarray, np.ndarray]:
    """For each surname and each given-name spelling of the vocabulary (the kana the residents
    file gets: `surname_katakana`, `given_with_near_katakana`), a small integer id of its
    matching key, `identity.name_key`: equal ids are names the fuzzy identity check reads as one.

    The key is computed once over the vocabulary (1,771 surnames, 18,926 given-name spellings),
    never per row; ids number the distinct keys in sorted order, so they do not depend on the run.
    """
    names = vocabulary.names()

    def ids(katakana: pl.Series) -> np.ndarray:
        keys = katakana.to_frame("kana").select(identity.name_key(pl.col("kana")).rank("dense") - 1)
        return keys.to_series().to_numpy().astype(np.int64)

    return ids(names.surname_katakana), ids(names.given_with_near_katakana)


BIRTH_DAY_SPAN = 2**16  # birth days since 1970 in [-2**15, 2**15): 1880-04-14 to 2059-09-18


def identity_keys(register: People) -> np.ndarray:
    """One int64 per row packing (family-name key, given-name key, birth date, sex): equal keys
    are rows the fuzzy identity check puts in one block with names equal once normalised
    (`identity.name_key`: ゴトウ and コトウ, ユウタ and ユータ are one name).

    Mixed radix over the vocabulary's distinct keys (1,738 family, 8,569 given), 2**16 days and
    2 sexes: about 2**42, checked against int64.
    """
    family_ids, given_ids = name_key_ids()
    family_count, given_count = int(family_ids.max()) + 1, int(given_ids.max()) + 1
    if family_count * given_count * BIRTH_DAY_SPAN * 2 > np.iinfo(np.int64).max:
        msg = (f"identity keys overflow int64: {family_count} family keys x {given_count} given keys "
               f"x {BIRTH_DAY_SPAN} days x 2 sexes")
        raise OverflowError(msg)
    birth_day = register.birth_on.astype(np.int64) + BIRTH_DAY_SPAN // 2
    if birth_day.size and (birth_day.min() < 0 or birth_day.max() >= BIRTH_DAY_SPAN):
        msg = (f"birth days {register.birth_on.min()}..{register.birth_on.max()} (days since 1970) "
               f"do not fit the identity key's {BIRTH_DAY_SPAN} days")
        raise OverflowError(msg)
    name = family_ids[register.surname] * given_count + given_ids[register.given_name]
    return (name * BIRTH_DAY_SPAN + birth_day) * 2 + register.is_female


def dates(days: np.ndarray) -> pl.Series:
    """int32 days since 1970 (NO_DAY = null) as a polars Date series."""
    missing = days == NO_DAY
    return pl.Series(pa.array(days.astype(np.int32), type=pa.date32(), mask=missing if missing.any() else None))


def household_order(register: People, households: Households) -> np.ndarray:
    """Row order that puts the planted copies (appended at the end) after their household's
    members: an O(n) insertion instead of a sort of the whole chunk."""
    originals = households.size.sum()
    copies = np.arange(originals, len(register))
    target = register.household[copies]
    by_target = np.argsort(target, kind="stable")
    insert_at = (households.start + households.size)[target[by_target]]
    return np.insert(np.arange(originals), insert_at, copies[by_target])


def residents(register: People, households: Households) -> pl.DataFrame:
    """The register as the RESIDENTS contract, sorted by household (head first)."""
    names = vocabulary.names()
    order = household_order(register, households)
    register = People(**{name: values[order] for name, values in vars(register).items()})
    municipality = households.municipality[register.household]
    frame = pl.DataFrame(
        {
            "my_number": register.my_number,
            "household_id": households.household_id[register.household],
            "is_head": register.is_head,
            "family_name_kana": names.surname_katakana.gather(register.surname),
            "given_name_kana": names.given_with_near_katakana.gather(register.given_name),
            "birth_date": dates(register.birth_on),
            "sex": pl.Series(["M", "F"]).gather(register.is_female.astype(np.int64)),
            "municipality_code": vocabulary.municipalities().code.gather(municipality),
            "registered_on": dates(register.registered_on),
            "moved_out_on": dates(register.moved_out_on),
            "died_on": dates(register.died_on),
        }
    )
    return frame.select(schemas.RESIDENTS.schema.names())
