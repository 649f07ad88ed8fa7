"""Planted faults: which households carry which fault, the register rows they change, and the
ground truth (schemas.TRUTH_FAULTS) a correct engine must reproduce.

Each planted household carries exactly one fault kind, and planted households get no natural
death, no opt-out and always a payable route (a linked account or an application), so that
every outcome is unambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from engine import schemas, sorted_index
from engine.synth import tables
from engine.synth.population import NO_DAY, SECOND_NUMBER_KEY_OFFSET, Households, People, my_numbers, wrong_check_digits

# fault kinds of the Mynapoint data; not (yet) in schemas.FAULT_KINDS
POINTS_FAULT_KINDS = {
    "second_wallet": "flag:second_wallet (a person linked a second wallet)",
    "refund_cycling": "flag:refund_cycling (≥3 charge→refund→charge cycles on one wallet)",
    "transaction_before_registration": "ignore:before_registration",
    "transaction_outside_window": "ignore:outside_window",
}
# not planted: different persons in different households who happen to share a name (equal once
# normalised for matching, identity.name_key), a birth date and a sex: real namesakes. A correct
# engine holds them like a fuzzy duplicate, so the truth lists them too (coincidental_namesakes)
COINCIDENCE_FAULT_KINDS = {"coincidental_namesake": "hold:fuzzy_identity"}
ALL_FAULT_KINDS = (*schemas.FAULT_KINDS, *POINTS_FAULT_KINDS, *COINCIDENCE_FAULT_KINDS)



def Rate(default: float) -> float:  # noqa: N802 - reads as a type in the model below
    return Field(default=default, ge=0.0, le=0.05)


class FaultRates(BaseModel):
    """Expected planted cases per household (per wallet, per transaction for the points faults).

    A case may span several households: a duplicate registration or fuzzy duplicate is a pair,
    a shared account a group of 3-5 households.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    invalid_my_number: float = Rate(default=0.002)
    duplicate_registration: float = Rate(default=0.001)
    born_after_basis: float = Rate(default=0.002)
    died_before_basis: float = Rate(default=0.002)
    moved_out_before_basis: float = Rate(default=0.002)
    shared_account: float = Rate(default=0.0005)
    holder_name_mismatch: float = Rate(default=0.002)
    applicant_not_head: float = Rate(default=0.002)
    duplicate_application_same_account: float = Rate(default=0.002)
    conflicting_applications: float = Rate(default=0.002)
    unknown_bank: float = Rate(default=0.001)
    fuzzy_duplicate_person: float = Rate(default=0.001)
    second_wallet: float = Rate(default=0.002)
    refund_cycling: float = Rate(default=0.002)
    transaction_before_registration: float = Rate(default=0.001)
    transaction_outside_window: float = Rate(default=0.001)


@dataclass(frozen=True)
class HouseholdFaults:
    """Household indices (into Households) per planted kind; pairs and groups aligned."""

    invalid_my_number: np.ndarray
    born_after_basis: np.ndarray
    died_before_basis: np.ndarray
    moved_out_before_basis: np.ndarray
    duplicate_registration_from: np.ndarray  # the person's own household …
    duplicate_registration_to: np.ndarray  # … and the one the copy lands in
    fuzzy_duplicate_from: np.ndarray
    fuzzy_duplicate_to: np.ndarray
    shared_account: np.ndarray  # households of all groups, group by group
    shared_account_owner: np.ndarray  # for each of those, the household whose head owns the account
    holder_name_mismatch: np.ndarray
    unknown_bank: np.ndarray
    applicant_not_head: np.ndarray
    duplicate_application_same_account: np.ndarray
    conflicting_applications: np.ndarray

    def planted(self, households: int) -> np.ndarray:
        """True for every household that carries a planted fault."""
        mask = np.zeros(households, dtype=bool)
        for value in vars(self).values():
            mask[value] = True
        return mask

    def head_without_account(self) -> np.ndarray:
        return np.concatenate(
            [self.applicant_not_head, self.duplicate_application_same_account, self.conflicting_applications]
        )

    def head_with_account(self) -> np.ndarray:
        return np.concatenate([self.shared_account, self.holder_name_mismatch, self.unknown_bank])


def _grouped_distinct(groups: np.ndarray, values: np.ndarray, group_sizes: np.ndarray) -> np.ndarray:
    """Per group: True when all its values differ."""
    if values.size == 0:
        return np.ones(group_sizes.size, dtype=bool)
    span = values.max() + 1
    keys = sorted_index.unique(groups * span + values)
    return np.bincount(keys // span, minlength=group_sizes.size) == group_sizes


def household_faults(rng: np.random.Generator, households: Households, rates: FaultRates) -> HouseholdFaults:
    """Draw disjoint sets of households for each planted kind."""
    count = len(households)
    order = rng.permutation(count)
    taken = np.zeros(count, dtype=bool)
    everyone = np.ones(count, dtype=bool)
    with_members = households.size >= 2

    def take(cases: int, eligible: np.ndarray) -> np.ndarray:
        chosen = order[eligible[order] & ~taken[order]][:cases]
        taken[chosen] = True
        return chosen

    def cases(rate: float) -> int:
        return int(rng.binomial(count, rate))

    def pairs(rate: float) -> tuple[np.ndarray, np.ndarray]:
        chosen = take(2 * cases(rate), everyone)
        half = chosen.size // 2
        source, target = chosen[:half], chosen[half : 2 * half]
        apart = households.municipality[source] != households.municipality[target]
        return source[apart], target[apart]

    invalid = take(cases(rates.invalid_my_number), with_members)
    born = take(cases(rates.born_after_basis), with_members)
    died = take(cases(rates.died_before_basis), with_members)
    moved = take(cases(rates.moved_out_before_basis), with_members)
    duplicate_from, duplicate_to = pairs(rates.duplicate_registration)
    fuzzy_from, fuzzy_to = pairs(rates.fuzzy_duplicate_person)
    group_sizes = rng.integers(3, 6, cases(rates.shared_account))
    shared = take(int(group_sizes.sum()), everyone)
    group_sizes = group_sizes[: np.searchsorted(np.cumsum(group_sizes), shared.size, side="right")]
    shared = shared[: group_sizes.sum()]
    group = np.repeat(np.arange(group_sizes.size), group_sizes)
    unrelated = (
        _grouped_distinct(group, households.surname[shared], group_sizes)
        & _grouped_distinct(group, households.municipality[shared], group_sizes)
    )
    keep = unrelated[group]
    owner = shared[(np.cumsum(group_sizes) - group_sizes)[group]]
    return HouseholdFaults(
        invalid_my_number=invalid,
        born_after_basis=born,
        died_before_basis=died,
        moved_out_before_basis=moved,
        duplicate_registration_from=duplicate_from,
        duplicate_registration_to=duplicate_to,
        fuzzy_duplicate_from=fuzzy_from,
        fuzzy_duplicate_to=fuzzy_to,
        shared_account=shared[keep],
        shared_account_owner=owner[keep],
        holder_name_mismatch=take(cases(rates.holder_name_mismatch), everyone),
        unknown_bank=take(cases(rates.unknown_bank), everyone),
        applicant_not_head=take(cases(rates.applicant_not_head), with_members),
        duplicate_application_same_account=take(cases(rates.duplicate_application_same_account), everyone),
        conflicting_applications=take(cases(rates.conflicting_applications), everyone),
    )


def member_rows(rng: np.random.Generator, households: Households, chosen: np.ndarray) -> np.ndarray:
    """A random non-head row of each chosen household (households of 2+)."""
    return households.start[chosen] + 1 + np.floor(rng.random(chosen.size) * (households.size[chosen] - 1)).astype(np.int64)


def any_rows(rng: np.random.Generator, households: Households, chosen: np.ndarray) -> np.ndarray:
    """A random row (head or not) of each chosen household."""
    return households.start[chosen] + np.floor(rng.random(chosen.size) * households.size[chosen]).astype(np.int64)


def _days_between(rng: np.random.Generator, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """A uniform day in [low, high] (inclusive), elementwise."""
    return (low + np.floor(rng.random(low.size) * (np.maximum(high, low) - low + 1))).astype(np.int32)


def _set(values: np.ndarray, rows: np.ndarray, new: np.ndarray | int | bool) -> np.ndarray:
    out = values.copy()
    out[rows] = new
    return out


def _copies(rng: np.random.Generator, register: People, rows: np.ndarray, into: np.ndarray,
            person_key: np.ndarray, my_number: np.ndarray, given_name: np.ndarray) -> People:
    """Copies of register rows as non-head members of households `into`, active on the basis date."""
    birth = register.birth_on[rows]
    return People(
        person_key=person_key,
        my_number=my_number,
        household=into,
        is_head=np.zeros(rows.size, dtype=bool),
        age_years=register.age_years[rows],
        is_female=register.is_female[rows],
        surname=register.surname[rows],
        given_name=given_name,
        birth_on=birth,
        registered_on=_days_between(rng, birth, np.full(rows.size, tables.BASIS_DAY)),
        moved_out_on=np.full(rows.size, NO_DAY, dtype=np.int32),
        died_on=np.full(rows.size, NO_DAY, dtype=np.int32),
        is_planted=np.ones(rows.size, dtype=bool),
    )


def _concat(parts: list[People]) -> People:
    return People(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in vars(parts[0])})


@dataclass(frozen=True)
class PlantedRegister:
    register: People
    truth: pl.DataFrame
    # rows of the register whose persons are each other's fuzzy duplicates (for the report)
    fuzzy_rows: np.ndarray


def planted_register(rng: np.random.Generator, register: People, households: Households,
                     faults: HouseholdFaults, seed: int, given_count: int) -> PlantedRegister:
    """The register with the resident faults planted, planted copies appended, and their truth.

    Given name index g + `given_count` stands for the near-identical spelling of name g.
    """
    basis = tables.BASIS_DAY
    invalid = member_rows(rng, households, faults.invalid_my_number)
    born = households.start[faults.born_after_basis] + households.size[faults.born_after_basis] - 1
    died = households.start[faults.died_before_basis] + 1  # the partner: an adult
    moved = households.start[faults.moved_out_before_basis] + 1
    duplicated = any_rows(rng, households, faults.duplicate_registration_from)
    fuzzy = any_rows(rng, households, faults.fuzzy_duplicate_from)

    born_on = _days_between(rng, np.full(born.size, basis + 1), np.full(born.size, tables.NEWBORNS_TO_DAY))
    # died or moved out: a day after registration and before the basis date (registration moved
    # earlier where needed, so that the order of dates is possible)
    early_registration = np.minimum(register.registered_on, basis - 30)
    early_registration = np.maximum(early_registration, register.birth_on)
    gone = np.concatenate([died, moved])
    gone_registered = early_registration[gone]
    gone_on = _days_between(rng, gone_registered + 1, np.full(gone.size, basis - 1))

    planted_rows = np.concatenate([invalid, born, gone])
    fuzzy_keys = SECOND_NUMBER_KEY_OFFSET + register.person_key[fuzzy]
    # no natural death in a planted household: the outcome must be the planted one alone
    alive = np.where(faults.planted(len(households))[register.household], NO_DAY, register.died_on)
    planted = replace(
        register,
        my_number=_set(register.my_number, invalid, wrong_check_digits(rng, register.my_number[invalid])),
        birth_on=_set(register.birth_on, born, born_on),
        age_years=_set(register.age_years, born, 0.0),
        registered_on=_set(_set(register.registered_on, born, born_on), gone, gone_registered),
        died_on=_set(alive, died, gone_on[: died.size]).astype(np.int32),
        moved_out_on=_set(register.moved_out_on, moved, gone_on[died.size :]),
        is_planted=_set(register.is_planted, planted_rows, True),
    )
    duplicate_copies = _copies(rng, planted, duplicated, faults.duplicate_registration_to,
                               planted.person_key[duplicated], planted.my_number[duplicated],
                               planted.given_name[duplicated])
    # 70% of fuzzy copies carry the near-identical spelling of the given name (index + given_count)
    near = rng.random(fuzzy.size) < 0.7
    fuzzy_copies = _copies(rng, planted, fuzzy, faults.fuzzy_duplicate_to, fuzzy_keys,
                           my_numbers(fuzzy_keys, seed),
                           planted.given_name[fuzzy] + np.where(near, given_count, 0))
    with_copies = _concat([planted, duplicate_copies, fuzzy_copies])
    household_id = households.household_id
    truth = pl.concat([
        truth_rows("invalid_my_number", "residents", household_id[faults.invalid_my_number], with_copies.my_number[invalid]),
        truth_rows("born_after_basis", "residents", household_id[faults.born_after_basis], with_copies.my_number[born]),
        truth_rows("died_before_basis", "residents", household_id[faults.died_before_basis], with_copies.my_number[died]),
        truth_rows("moved_out_before_basis", "residents", household_id[faults.moved_out_before_basis], with_copies.my_number[moved]),
        truth_rows("duplicate_registration", "residents",
                   household_id[np.concatenate([faults.duplicate_registration_from, faults.duplicate_registration_to])],
                   np.tile(duplicate_copies.my_number, 2)),
        truth_rows("fuzzy_duplicate_person", "residents",
                   household_id[np.concatenate([faults.fuzzy_duplicate_from, faults.fuzzy_duplicate_to])],
                   np.concatenate([with_copies.my_number[fuzzy], fuzzy_copies.my_number])),
    ])
    return PlantedRegister(register=with_copies, truth=truth, fuzzy_rows=fuzzy)


def _ids(values: np.ndarray | None, rows: int) -> pl.Series:
    if values is None:
        return pl.Series([None] * rows, dtype=pl.Int64)
    return pl.Series(np.asarray(values, dtype=np.int64))


def truth_rows(fault: str, dataset: str, household_id: np.ndarray | None = None,
               my_number: np.ndarray | None = None, application_id: np.ndarray | None = None,
               wallet_id: np.ndarray | None = None, transaction_id: np.ndarray | None = None) -> pl.DataFrame:
    """Ground-truth rows for one fault kind (schemas.TRUTH_FAULTS); absent ids are null."""
    given = [v for v in (household_id, my_number, application_id, wallet_id, transaction_id) if v is not None]
    rows = np.asarray(given[0]).size
    return pl.DataFrame({
        "fault": pl.Series([fault] * rows, dtype=pl.String),
        "dataset": pl.Series([dataset] * rows, dtype=pl.String),
        "household_id": _ids(household_id, rows),
        "my_number": _ids(my_number, rows),
        "application_id": _ids(application_id, rows),
        "wallet_id": _ids(wallet_id, rows),
        "transaction_id": _ids(transaction_id, rows),
    })


def coincidental_namesakes(identities: pl.DataFrame) -> pl.DataFrame:
    """Truth rows for the register rows that share identity_key (population.identity_keys: the
    family and given names equal once normalised for matching, the birth date and the sex) with
    a row of another person in another household: the rows the fuzzy identity check meets in one
    block, compares and matches, though nobody planted them.

    `identities` has identity_key, person_key, my_number and household_id for every register row
    of the whole run. A person is a person key, and a fuzzy duplicate's second registration (key
    + SECOND_NUMBER_KEY_OFFSET) is its original's person: one My Number in two households and a
    planted fuzzy duplicate are not namesakes of themselves (the truth lists them as what they
    are), but any of their rows is a namesake of a third person. Rows of one household never are
    (the check skips pairs inside a household: twins). A My Number in several households is
    listed once, in the smallest of those that has a namesake, the household the check keeps for
    a shared My Number.

    The truth knows nothing of the night: a namesake the night does not see as an eligible member
    (died, moved out or born after the basis date, an invalid My Number), or one whose household is
    not payable, is listed though the check cannot hold it (at 10M residents 16 rows, 14 of them
    persons who died after the basis date).

    One sort of the keys finds the repeated ones (no hash table of all rows: 125M nationally);
    only the rows with a repeated key (under 1%) are compared further.
    """
    repeated = sorted_index.repeated(identities.get_column("identity_key").to_numpy())
    person = pl.col("person_key") - pl.when(pl.col("person_key") >= SECOND_NUMBER_KEY_OFFSET).then(
        SECOND_NUMBER_KEY_OFFSET).otherwise(0)

    def rows_sharing(*columns: str) -> pl.Expr:
        return pl.len().over("identity_key", *columns)

    # another person in another household: the group minus the rows of the same person or the
    # same household (inclusion-exclusion; each count includes the row itself)
    has_namesake = rows_sharing() - rows_sharing("person") - rows_sharing("household_id") + rows_sharing(
        "person", "household_id") > 0
    rows = (
        identities.filter(pl.col("identity_key").is_in(pl.Series(repeated, dtype=pl.Int64).implode()))
        .with_columns(person=person)
        .filter(has_namesake)
        .sort("identity_key", "my_number", "household_id")
        .unique(["identity_key", "my_number"], keep="first", maintain_order=True)
    )
    return truth_rows("coincidental_namesake", "residents", rows["household_id"].to_numpy(),
                      rows["my_number"].to_numpy())
