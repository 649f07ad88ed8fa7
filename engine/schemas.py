"""Schema contracts for every dataset the engine reads or writes, in run order.

A contract's `name` is the dataset's name everywhere: the input file `DIR/<name>.parquet`, the
checkpoint and the DuckDB table. Input contracts list the columns the engine needs (extra columns
are allowed and ignored); `my_number` columns may arrive as Int64 or as 12-digit strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from engine.errors import SchemaContractError

DATE = pl.Date
BANK_FIELDS = {
    "bank_code": pl.String,  # 4 digits, 統一金融機関番号
    "branch_code": pl.String,  # 3 digits, 統一店番号
    "account_type": pl.String,  # 1 普通, 2 当座, 4 貯蓄, 9 その他
    "account_number": pl.String,  # 7 digits
    "holder_name_kana": pl.String,  # as written by the holder: katakana, full- or half-width
}


@dataclass(frozen=True)
class Contract:
    name: str
    schema: pl.Schema
    # columns that may arrive as another type and are cast by ingest (name -> accepted types)
    castable: dict[str, tuple[pl.DataType, ...]] = field(default_factory=dict)
    required: bool = True


MY_NUMBER_TYPES = (pl.Int64, pl.String, pl.UInt64, pl.Int32, pl.UInt32)
ID_TYPES = (pl.Int64, pl.Int32, pl.UInt32, pl.UInt64)

# ---- inputs (SPEC.md "Inputs") -------------------------------------------------------------
RESIDENTS = Contract(
    "residents",
    pl.Schema(
        {
            "my_number": pl.Int64,
            "household_id": pl.Int64,
            "is_head": pl.Boolean,
            "family_name_kana": pl.String,
            "given_name_kana": pl.String,
            "birth_date": DATE,
            "sex": pl.String,  # "M" / "F"
            "municipality_code": pl.String,  # 6 digits with check digit (JIS X 0402)
            "registered_on": DATE,
            "moved_out_on": DATE,
            "died_on": DATE,
        }
    ),
    castable={"my_number": MY_NUMBER_TYPES, "household_id": ID_TYPES},
)

ACCOUNTS = Contract(
    "accounts",
    pl.Schema({"my_number": pl.Int64, **BANK_FIELDS, "linked_on": DATE}),
    castable={"my_number": MY_NUMBER_TYPES},
)

APPLICATIONS = Contract(
    "applications",
    pl.Schema(
        {
            "application_id": pl.Int64,
            "household_id": pl.Int64,
            "applicant_my_number": pl.Int64,
            "channel": pl.String,  # "mail" / "online"
            "received_on": DATE,
            **BANK_FIELDS,
            "declined_my_numbers": pl.List(pl.Int64),
        }
    ),
    castable={
        "application_id": ID_TYPES,
        "household_id": ID_TYPES,
        "applicant_my_number": MY_NUMBER_TYPES,
        "declined_my_numbers": (pl.List(pl.Int64), pl.List(pl.String)),
    },
)

SERVICES = Contract(
    "services",
    pl.Schema({"service_id": pl.Int64, "name": pl.String, "kind": pl.String}),  # prepaid / postpaid
    castable={"service_id": ID_TYPES},
    required=False,  # Mynapoint inputs: a benefit-only night runs without them
)

WALLETS = Contract(
    "wallets",
    pl.Schema(
        {"wallet_id": pl.Int64, "my_number": pl.Int64, "service_id": pl.Int64, "registered_on": DATE}
    ),
    castable={"wallet_id": ID_TYPES, "my_number": MY_NUMBER_TYPES, "service_id": ID_TYPES},
    required=False,  # Mynapoint inputs: a benefit-only night runs without them
)

TRANSACTIONS = Contract(
    "transactions",
    pl.Schema(
        {
            "transaction_id": pl.Int64,
            "wallet_id": pl.Int64,
            "occurred_at": pl.Datetime("us"),
            "kind": pl.String,  # charge / purchase / refund
            "amount_yen": pl.Int64,
            "refund_of": pl.Int64,
        }
    ),
    castable={"transaction_id": ID_TYPES, "wallet_id": ID_TYPES, "refund_of": ID_TYPES,
              "amount_yen": (pl.Int32, pl.UInt32)},
    required=False,  # Mynapoint inputs: a benefit-only night runs without them
)

DECISIONS = Contract(
    "decisions",
    pl.Schema(
        {
            "hold_id": pl.String,
            "decision": pl.String,  # release / deny
            "decided_by": pl.String,
            "decided_on": DATE,
            "note": pl.String,
        }
    ),
    required=False,
)

INPUTS = (RESIDENTS, ACCOUNTS, APPLICATIONS, SERVICES, WALLETS, TRANSACTIONS, DECISIONS)

# ---- ground truth written by the generator (truth/faults.parquet) -------------------------
TRUTH_FAULTS = Contract(
    "faults",
    pl.Schema(
        {
            "fault": pl.String,  # one of FAULT_KINDS
            "dataset": pl.String,  # the input dataset the planted row lives in
            "household_id": pl.Int64,  # the household the fault concerns (null if none)
            "my_number": pl.Int64,  # the person concerned (null if none)
            "application_id": pl.Int64,
            "wallet_id": pl.Int64,
            "transaction_id": pl.Int64,
        }
    ),
)

# ---- reason codes --------------------------------------------------------------------------
# Rejects: an input row that cannot be used at all.
REJECT_REASONS = {
    "missing_value": "a required column is null",
    "my_number_format": "My Number is not 12 digits",
    "my_number_check_digit": "My Number check digit is wrong (research §3.1)",
    "municipality_unknown": "municipality code is not in the JIS X 0402 table",
    "municipality_check_digit": "municipality code check digit is wrong (research §7.7)",
    "bank_unknown": "bank code is not in the zengin-code bank master",
    "branch_unknown": "branch code is not a branch of that bank in the bank master",
    "account_format": "account type or account number is not in the Zengin format",
    "impossible_date": "a date is impossible (after the run date, or out of order)",
    "duplicate_key": "the dataset's key appears on more than one row",
    "duplicate_row": "an exact copy of another row (the first copy is kept)",
    "unknown_household": "the application names a household that is not on the register",
    "invalid_value": "a coded column holds a value outside its allowed set",
    "amount_not_positive": "a charge or purchase amount is zero or negative",
    "unknown_wallet": "the transaction's wallet_id is not in the wallets dataset",
    "unknown_refunded_transaction": "refund_of is not a valid charge or purchase of the same wallet",
    "refund_exceeds_amount": "the refunds of a transaction, up to this one, total more than its amount",
}
# Not eligible: a valid resident row that is not owed the benefit.
NOT_ELIGIBLE_REASONS = {
    "born_after_basis": "born after the basis date",
    "died_before_basis": "died before the basis date",
    "not_registered_on_basis": "not on the register on the basis date (moved out or registered later)",
    "declined": "opted out on the household's application",
    "household_not_payable": "the household has no living eligible member",
    "paid_in_another_household": "the person's share was paid with another household on an earlier night",
}
# Holds: a household whose payout waits for an operator's review.
HOLD_REASONS = {
    "double_registration": "the same My Number is active in two households on the basis date",
    "fuzzy_identity": "a member is clearly the same person as a member of another household",
    "shared_account": "the payee account receives for several unrelated households",
    "holder_name_mismatch": "the account holder's name does not match the payee",
    "applicant_not_head": "the online application was made by someone who is not the head",
    "conflicting_applications": "the household's applications carry different accounts",
}
# Awaiting: no account to pay into yet.
AWAITING_REASONS = {"no_account": "the head has no linked account and no application was received"}

FAULT_KINDS = {
    # fault planted by the generator -> the outcome the engine must produce for it
    "invalid_my_number": "reject:my_number_check_digit",
    "duplicate_registration": "hold:double_registration",
    "born_after_basis": "not_eligible:born_after_basis",
    "died_before_basis": "not_eligible:died_before_basis",
    "moved_out_before_basis": "not_eligible:not_registered_on_basis",
    "shared_account": "hold:shared_account",
    "holder_name_mismatch": "hold:holder_name_mismatch",
    "applicant_not_head": "hold:applicant_not_head",
    "duplicate_application_same_account": "paid_once",
    "conflicting_applications": "hold:conflicting_applications",
    "unknown_bank": "reject:bank_unknown",
    "fuzzy_duplicate_person": "hold:fuzzy_identity",
}
# the generator adds the Mynapoint kinds and coincidental namesakes: engine/synth/faults.py


def conform(lf: pl.LazyFrame, contract: Contract) -> pl.LazyFrame:
    """Check `lf` against `contract` (reads no rows) and fix the column order."""
    actual, expected = lf.collect_schema(), contract.schema
    missing = [c for c in expected if c not in actual]
    unexpected = [c for c in actual if c not in expected]
    wrong = [
        f"{c} is {actual[c]}, expected {expected[c]}"
        for c in expected
        if c in actual and actual[c] != expected[c]
    ]
    if missing or unexpected or wrong:
        raise SchemaContractError.from_diff(
            contract.name, missing=missing, unexpected=unexpected, wrong=wrong
        )
    return lf.select(expected.names())
