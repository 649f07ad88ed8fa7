"""Synthetic linked bank accounts (research §8) and benefit applications (research §1.2).

Account numbers are unique per (bank, branch) by construction: chunk c owns the slots
[c·S, (c+1)·S) of every branch (S = 10^7 // chunks; linked accounts the first half, application
accounts the second), and a slot becomes a 7-digit number through a bijection mod 10^7.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from engine import schemas
from engine.synth import tables, vocabulary
from engine.synth.faults import HouseholdFaults, _days_between, member_rows, truth_rows
from engine.synth.population import Households, People, dates

ACCOUNT_NUMBER_SPACE = 10**7
ACCOUNT_NUMBER_MULTIPLIER = 3_141_593  # coprime to 10^7: slot → number is a bijection per branch
HOLDER_NAME_STYLE_SHARES = (0.50, 0.25, 0.20, 0.05)  # see holder_names()
NO_ACCOUNT, LINKED_ACCOUNT, UNKNOWN_BANK_ACCOUNT = 0, 1, 2


@dataclass(frozen=True)
class AccountSlots:
    """The account-number slots a chunk may use in every branch."""

    first: int
    capacity: int

    @classmethod
    def for_chunk(cls, chunk_index: int, chunks: int, applications: bool) -> AccountSlots:
        per_chunk = ACCOUNT_NUMBER_SPACE // chunks
        half = per_chunk // 2
        return cls(first=chunk_index * per_chunk + (half if applications else 0), capacity=half)


def rank_within(keys: np.ndarray) -> np.ndarray:
    """0, 1, 2 … for the successive occurrences of each key, in array order."""
    # small keys (branch indices) sort as uint16: numpy's stable sort is then a radix sort
    small = keys.size == 0 or (keys.min() >= 0 and keys.max() < 2**16)
    order = np.argsort(keys.astype(np.uint16) if small else keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    lengths = np.diff(np.r_[starts, ordered.size])
    rank = np.empty(keys.size, dtype=np.int64)
    rank[order] = np.arange(keys.size) - np.repeat(starts, lengths)
    return rank


def account_numbers(branch: np.ndarray, slots: AccountSlots) -> pl.Series:
    """A distinct 7-digit number for each account, within its branch."""
    rank = rank_within(branch)
    if rank.size and rank.max() >= slots.capacity:
        msg = (f"a chunk needs {rank.max() + 1} account numbers in one branch, but has {slots.capacity}"
               "\n\nHint: use fewer, larger chunks (chunk_households).")
        raise ValueError(msg)
    number = (ACCOUNT_NUMBER_MULTIPLIER * (slots.first + rank) + branch * 7_919) % ACCOUNT_NUMBER_SPACE
    return pl.Series(number).cast(pl.String).str.zfill(7)


def holder_names(rng: np.random.Generator, surname: np.ndarray, given_name: np.ndarray) -> pl.Series:
    """The name as a holder writes it: 'ヤマダ タロウ', 'ヤマダ　タロウ', 'ﾔﾏﾀﾞ ﾀﾛｳ' or 'やまだ　たろう'.

    All four normalise to the same Zengin name (research §5.3).
    """
    names = vocabulary.names()
    style = rng.choice(len(HOLDER_NAME_STYLE_SHARES), size=surname.size, p=HOLDER_NAME_STYLE_SHARES)
    separator = pl.Series([" ", "\u3000", " ", "\u3000"]).gather(style)
    return (
        names.surname_spellings.gather(style * names.surname_count + surname)
        + separator
        + names.given_spellings.gather(style * names.given_count + given_name)
    )


def other_person_names(rng: np.random.Generator, surname: np.ndarray, given_name: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A clearly different person's name: another surname and another given-name reading."""
    names = vocabulary.names()
    other_surname = (surname + rng.integers(1, names.surname_count, surname.size)) % names.surname_count
    other_given = (given_name + rng.integers(1, names.given_count, given_name.size)) % names.given_count
    # the same reading can be both a male and a female name: then take its neighbour
    same = (names.given_katakana.gather(other_given) == names.given_katakana.gather(given_name)).to_numpy()
    return other_surname, np.where(same, (other_given + 1) % names.given_count, other_given)


def random_branches(rng: np.random.Generator, count: int) -> np.ndarray:
    branches = vocabulary.branches()
    return rng.choice(branches.probability.size, size=count, p=branches.probability)


def account_types(rng: np.random.Generator, count: int) -> pl.Series:
    kinds = list(tables.ACCOUNT_TYPE_SHARES)
    return pl.Series(kinds).gather(rng.choice(len(kinds), size=count, p=list(tables.ACCOUNT_TYPE_SHARES.values())))


@dataclass(frozen=True)
class LinkedAccounts:
    frame: pl.DataFrame  # ACCOUNTS contract
    truth: pl.DataFrame
    head_account: np.ndarray  # per household: NO_ACCOUNT, LINKED_ACCOUNT or UNKNOWN_BANK_ACCOUNT


def linked_accounts(rng: np.random.Generator, register: People, households: Households,
                    faults: HouseholdFaults, slots: AccountSlots) -> LinkedAccounts:
    """About half the adults and a tenth of the minors have an account linked to their My Number."""
    share = np.where(register.age_years >= tables.ADULT_AGE, tables.ADULT_ACCOUNT_SHARE, tables.MINOR_ACCOUNT_SHARE)
    has = (rng.random(len(register)) < share) & ~register.is_planted
    has[households.start[faults.head_with_account()]] = True
    has[households.start[faults.head_without_account()]] = False
    rows = np.flatnonzero(has)
    count = rows.size
    branch = random_branches(rng, count)
    number = account_numbers(branch, slots)
    account_type = account_types(rng, count)
    holder = holder_names(rng, register.surname[rows], register.given_name[rows])
    low = np.maximum(register.birth_on[rows], tables.EARLY_LINK_FROM_DAY)
    early = _days_between(rng, low, np.full(count, tables.BASIS_DAY - 1))
    late = _days_between(rng, np.full(count, tables.BASIS_DAY), np.full(count, tables.LATE_LINK_TO_DAY))
    planted_household = faults.planted(len(households))[register.household[rows]]
    linked_on = np.where((rng.random(count) < tables.LATE_LINK_SHARE) & ~planted_household, late, early)

    # the account row of each household's head (-1: none)
    head_row = np.full(len(households), -1, dtype=np.int64)
    heads = register.is_head[rows]
    head_row[register.household[rows][heads]] = np.flatnonzero(heads)
    # shared accounts: the other heads of a group carry the owner's account, holder name and all
    source = np.arange(count)
    source[head_row[faults.shared_account]] = head_row[faults.shared_account_owner]
    # holder-name mismatch: a clearly different person's name on the head's own account
    mismatch = head_row[faults.holder_name_mismatch]
    other_surname, other_given = other_person_names(
        rng, register.surname[rows[mismatch]], register.given_name[rows[mismatch]])
    holder = holder.gather(source).scatter(mismatch, holder_names(rng, other_surname, other_given))
    branch = branch[source]
    branch[head_row[faults.unknown_bank]] = vocabulary.branches().unknown_bank_index

    branches = vocabulary.branches()
    frame = pl.DataFrame({
        "my_number": register.my_number[rows],
        "bank_code": branches.bank_code.gather(branch),
        "branch_code": branches.branch_code.gather(branch),
        "account_type": account_type.gather(source),
        "account_number": number.gather(source),
        "holder_name_kana": holder,
        "linked_on": dates(linked_on),
    }).select(schemas.ACCOUNTS.schema.names())

    head_account = np.where(head_row >= 0, LINKED_ACCOUNT, NO_ACCOUNT)
    head_account[faults.unknown_bank] = UNKNOWN_BANK_ACCOUNT
    household_id = households.household_id
    head_number = register.my_number[households.start]
    not_owner = faults.shared_account[faults.shared_account != faults.shared_account_owner]
    named_wrong = np.concatenate([not_owner, faults.holder_name_mismatch])
    truth = pl.concat([
        truth_rows("shared_account", "accounts", household_id[faults.shared_account], head_number[faults.shared_account]),
        truth_rows("holder_name_mismatch", "accounts", household_id[named_wrong], head_number[named_wrong]),
        truth_rows("unknown_bank", "accounts", household_id[faults.unknown_bank], head_number[faults.unknown_bank]),
    ])
    return LinkedAccounts(frame=frame, truth=truth, head_account=head_account)


def declined_lists(declined: np.ndarray) -> pl.Series:
    """A list per application: [the declined My Number], or [] where `declined` is -1."""
    offsets = np.r_[0, np.cumsum(declined >= 0)].astype(np.int32)
    values = pa.array(declined[declined >= 0], type=pa.int64())
    return pl.Series(pa.ListArray.from_arrays(pa.array(offsets), values))


@dataclass(frozen=True)
class Applications:
    frame: pl.DataFrame  # APPLICATIONS contract
    truth: pl.DataFrame


def _received_on(rng: np.random.Generator, count: int) -> np.ndarray:
    return _days_between(rng, np.full(count, tables.APPLICATIONS_FROM_DAY), np.full(count, tables.APPLICATIONS_TO_DAY))


def applications(rng: np.random.Generator, register: People, households: Households,
                 faults: HouseholdFaults, accounts: LinkedAccounts, slots: AccountSlots) -> Applications:
    """Benefit applications: most households whose head has no usable linked account apply once,
    by mail or online, with a new account of the head; the planted kinds add their own rows."""
    count = len(households)
    planted = faults.planted(count)
    special = np.zeros(count, dtype=bool)
    special[faults.head_without_account()] = True
    usable = accounts.head_account == LINKED_ACCOUNT
    draw = rng.random(count)
    # planted households always apply: their outcome must not be 'awaiting'
    regular = np.flatnonzero(~usable & ~special & ((draw < tables.APPLY_SHARE) | planted))
    anyway = np.flatnonzero(usable & ~planted & (draw < tables.APPLY_ANYWAY_SHARE))
    not_head = faults.applicant_not_head
    same = faults.duplicate_application_same_account
    conflicting = faults.conflicting_applications

    # one new account of the head per account group
    account_household = np.concatenate([regular, not_head, same, conflicting, conflicting])
    head = households.start[account_household]
    branch = random_branches(rng, account_household.size)
    new_accounts = pl.DataFrame({
        "bank_code": vocabulary.branches().bank_code.gather(branch),
        "branch_code": vocabulary.branches().branch_code.gather(branch),
        "account_type": account_types(rng, account_household.size),
        "account_number": account_numbers(branch, slots),
        "holder_name_kana": holder_names(rng, register.surname[head], register.given_name[head]),
    })
    first = np.cumsum([0, regular.size, not_head.size, same.size, conflicting.size])
    account_index = np.concatenate([
        np.arange(first[0], first[1]), np.arange(first[1], first[2]),
        np.arange(first[2], first[3]), np.arange(first[2], first[3]),
        np.arange(first[3], first[4]), np.arange(first[4], first[4] + conflicting.size),
    ])
    household = np.concatenate([regular, not_head, same, same, conflicting, conflicting])
    sequence = np.concatenate([np.zeros(regular.size + not_head.size + same.size, dtype=np.int64),
                               np.ones(same.size, dtype=np.int64), np.zeros(conflicting.size, dtype=np.int64),
                               np.ones(conflicting.size, dtype=np.int64)])
    applicant = households.start[household]
    applicant[regular.size : regular.size + not_head.size] = households.start[not_head] + 1  # the partner
    mail = rng.random(household.size) < tables.MAIL_SHARE
    mail[regular.size : regular.size + not_head.size] = False  # the online route let non-heads apply (§1.4 F7)
    both_routes = regular.size + not_head.size
    mail[both_routes : both_routes + same.size] = True
    mail[both_routes + same.size : both_routes + 2 * same.size] = False
    with_new = new_accounts.gather(account_index).with_columns(
        household=household, sequence=sequence, applicant=applicant, mail=mail)
    with_linked = (
        pl.DataFrame({"my_number": register.my_number[households.start[anyway]], "household": anyway})
        .join(accounts.frame.drop("linked_on"), on="my_number", how="left", maintain_order="left")
        .drop("my_number")
        .with_columns(sequence=pl.lit(0, pl.Int64), applicant=households.start[anyway],
                      mail=rng.random(anyway.size) < tables.MAIL_SHARE)
    )
    requests = pl.concat([with_new, with_linked], how="diagonal_relaxed")
    rows = requests.height
    request_household = requests["household"].to_numpy()
    # opt-outs: a non-head member of a clean household of 2+ declines
    declines = ((rng.random(rows) < tables.DECLINE_SHARE) & ~planted[request_household]
                & (households.size[request_household] >= 2))
    declined = np.full(rows, -1, dtype=np.int64)
    declined[declines] = register.my_number[member_rows(rng, households, request_household[declines])]
    application_id = households.household_id[request_household] * 10 + requests["sequence"].to_numpy()
    frame = requests.with_columns(
        application_id=application_id,
        household_id=households.household_id[request_household],
        applicant_my_number=register.my_number[requests["applicant"].to_numpy()],
        channel=pl.when(pl.col("mail")).then(pl.lit("mail")).otherwise(pl.lit("online")),
        received_on=dates(_received_on(rng, rows)),
        declined_my_numbers=declined_lists(declined),
    ).select(schemas.APPLICATIONS.schema.names()).sort("application_id")

    household_id = households.household_id
    head_number = register.my_number[households.start]
    truth = pl.concat([
        truth_rows("applicant_not_head", "applications", household_id[not_head],
                   register.my_number[applicant[regular.size : regular.size + not_head.size]],
                   household_id[not_head] * 10),
        truth_rows("duplicate_application_same_account", "applications", np.tile(household_id[same], 2),
                   np.tile(head_number[same], 2), np.concatenate([household_id[same] * 10, household_id[same] * 10 + 1])),
        truth_rows("conflicting_applications", "applications", np.tile(household_id[conflicting], 2),
                   np.tile(head_number[conflicting], 2),
                   np.concatenate([household_id[conflicting] * 10, household_id[conflicting] * 10 + 1])),
    ])
    return Applications(frame=frame, truth=truth)
