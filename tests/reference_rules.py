"""An independent implementation of SPEC.md's benefit rules in plain DuckDB SQL.

It shares no code with the engine (no engine import except for the bank master and municipality
table, which are reference data): tests compare every household's entitled amount, and whether it
has an account to pay into, with what the engine decided.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import polars as pl


def _source(inputs: Path, name: str) -> str:
    single = inputs / f"{name}.parquet"
    return f"'{single}'" if single.exists() else f"'{inputs / name}/**/*.parquet'"


def _check_digit_ok(column: str) -> str:
    """SQL: the My Number check digit of research §3.1, digit by digit."""
    weights = [6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2]  # for digits 1..11, left to right
    terms = " + ".join(
        f"{w} * ((({column}) // {10 ** (11 - i)}) % 10)" for i, w in enumerate(weights)
    )
    return (f"(({column}) BETWEEN 0 AND 999999999999 AND "
            f"(({column}) % 10) = ((11 - (({terms}) % 11)) % 11) % 10)")


def reference_households(inputs: Path, run_date: date, basis: date = date(2020, 4, 27),
                         amount_yen: int = 100_000) -> pl.DataFrame:
    """household_id, entitled_yen, has_account for every household with a valid member."""
    con = duckdb.connect()
    return con.sql(households_sql(con, inputs, run_date, basis, amount_yen)).order("household_id").pl()


def households_sql(con: duckdb.DuckDBPyConnection, inputs: Path, run_date: date, basis: date = date(2020, 4, 27),
                   amount_yen: int = 100_000) -> str:
    """The query of reference_households (the reference tables registered on `con`), for a
    caller that runs it with its own settings (benchmarks/check_national.py, at 125M)."""
    from engine import reference  # reference data only: bank master and municipality codes

    con.register("banks", reference.branches().to_arrow())
    con.register("municipalities", reference.municipalities().to_arrow())
    d, b = f"DATE '{run_date}'", f"DATE '{basis}'"
    return f"""
    WITH raw AS (SELECT my_number, household_id, is_head, family_name_kana, given_name_kana,
                        birth_date, sex, municipality_code, registered_on, moved_out_on, died_on,
                        -- a row's place on the register (files in name order): equally old
                        -- members (twins) give way to the one listed first
                        min((filename, file_row_number)) AS place
                 FROM read_parquet({_source(inputs, 'residents')}, filename = true, file_row_number = true)
                 GROUP BY ALL),
    residents AS (
        SELECT my_number, household_id, is_head, birth_date, registered_on, place,
               CASE WHEN moved_out_on <= {d} THEN moved_out_on END AS moved_out_on,
               CASE WHEN died_on <= {d} THEN died_on END AS died_on
        FROM raw
        WHERE {_check_digit_ok('my_number')}
          AND municipality_code IN (SELECT municipality_code FROM municipalities)
          AND sex IN ('M', 'F') AND birth_date IS NOT NULL AND registered_on IS NOT NULL
          AND NOT (birth_date > {d} AND registered_on <= {d})
          AND registered_on >= birth_date
    ),
    accounts AS (
        SELECT * FROM read_parquet({_source(inputs, 'accounts')})
        WHERE linked_on <= {d} AND {_check_digit_ok('my_number')}
          AND (bank_code, branch_code) IN (SELECT (bank_code, branch_code) FROM banks)
          AND account_type IN ('1', '2', '4', '9') AND regexp_full_match(account_number, '\\d{{7}}')
    ),
    applications AS (
        SELECT * FROM read_parquet({_source(inputs, 'applications')})
        WHERE received_on <= {d} AND {_check_digit_ok('applicant_my_number')}
          AND channel IN ('mail', 'online')
          AND (bank_code, branch_code) IN (SELECT (bank_code, branch_code) FROM banks)
          AND account_type IN ('1', '2', '4', '9') AND regexp_full_match(account_number, '\\d{{7}}')
          AND household_id IN (SELECT household_id FROM residents)
    ),
    declined AS (
        SELECT DISTINCT household_id, unnest(declined_my_numbers) AS my_number FROM applications
    ),
    members AS (
        SELECT r.*,
               (r.registered_on <= {b} AND (r.moved_out_on IS NULL OR r.moved_out_on > {b})
                AND r.birth_date <= {b} AND (r.died_on IS NULL OR r.died_on >= {b})) AS eligible,
               dcl.my_number IS NOT NULL AS declined
        FROM residents r LEFT JOIN declined dcl USING (household_id, my_number)
    ),
    households AS (
        SELECT household_id,
               count(*) FILTER (WHERE eligible AND NOT declined) AS counted,
               count(*) FILTER (WHERE eligible AND died_on IS NULL) AS living
        FROM members GROUP BY household_id
    ),
    payee AS (
        SELECT household_id, arg_min(my_number, (NOT is_head, birth_date, place)) AS payee
        FROM members WHERE eligible AND died_on IS NULL GROUP BY household_id
    )
    SELECT h.household_id,
           CASE WHEN h.living > 0 THEN h.counted * {amount_yen} ELSE 0 END::BIGINT AS entitled_yen,
           (p.payee IN (SELECT my_number FROM accounts)
            OR h.household_id IN (SELECT household_id FROM applications)) AS has_account
    FROM households h LEFT JOIN payee p USING (household_id)
    """
