"""The core of the benefit night as plain, hand-written DuckDB SQL: the yardstick the engine's
stages are timed against (benchmarks/test_baseline.py, benchmarks/national.py).

It reads the same Parquet inputs as the engine and shares no code with it (the only engine import
is engine.reference, for the bank master and the municipality table: reference data). One function
per step, each running a `CREATE OR REPLACE TABLE` on the connection it is given:

    residents        My Number check digit (digit arithmetic in SQL), exact dedup of resident rows
                     (and of rows repeating a (my_number, household_id) key: the first in file order
                     is kept, as the engine does), the other row rules, dates as of the run date
    accounts         valid linked accounts as of the run date, the latest link per person
    applications     valid applications received by the run date, for known households
    members          eligibility on the basis date, opted-out members
    households       ¥100,000 × eligible members not declined; 0 without a living eligible member
    payees           the payee (head, else the eldest living eligible member) and the account:
                     the payee's linked account, else the household's earliest application (the
                     payee's own first, if any)
    shared_accounts  accounts receiving for ≥ 2 households whose payees have ≥ 2 family names
    points           Mynapoint: floor(25% × amount) per qualifying transaction, in order of
                     occurrence per person, under the ¥5,000 cap: a running sum clipped at the cap

What the baseline does NOT do (so the engine does more work than it in the same stages): no
refunds or clawbacks (refunds are left out of the points entirely), no wallet holds (shared or
second wallets, refund cycling), no reject tables or reasons, no fuzzy identity check, no holder
name similarity, no state across nights, no Zengin files, ledger or analyst database. Family names
are compared after folding only the long vowel mark and spaces (the engine applies the whole
Zengin normalisation first), so shared-account counts may differ slightly; household
entitlements must agree with the engine to the yen (asserted by test_baseline.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb

BASIS = date(2020, 4, 27)
AMOUNT_YEN = 100_000
RATE_PERCENT = 25
CAP_YEN = 5_000
WINDOW = (date(2020, 9, 1), date(2021, 12, 31))
EARNS_ON = {"prepaid": "charge", "postpaid": "purchase"}
MY_NUMBER_WEIGHTS = (6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2)  # digits 1..11, left to right (research §3.1)


def source(inputs: Path, name: str) -> str:
    """read_parquet over a dataset (one file or a folder of parts), with each row's position in
    file order (files in name order, as engine/ingest.py numbers rows)."""
    single = inputs / f"{name}.parquet"
    glob = str(single) if single.exists() else str(inputs / name / "**" / "*.parquet")
    return f"read_parquet('{glob}', filename = true, file_row_number = true)"


def check_digit_ok(column: str) -> str:
    """SQL predicate: a 12-digit My Number whose last digit is the check digit of the first 11:
    s = Σ w_i·d_i, check = (11 − s mod 11) mod 11 mod 10."""
    terms = " + ".join(f"{w} * (({column} // {10 ** (11 - i)}) % 10)" for i, w in enumerate(MY_NUMBER_WEIGHTS))
    return (f"({column} BETWEEN 0 AND 999999999999 "
            f"AND {column} % 10 = ((11 - (({terms}) % 11)) % 11) % 10)")


def bank_ok(alias: str = "") -> str:
    p = f"{alias}." if alias else ""
    return (f"{p}holder_name_kana IS NOT NULL AND {p}account_type IN ('1', '2', '4', '9') "
            f"AND regexp_full_match({p}account_number, '[0-9]{{7}}') "
            f"AND ({p}bank_code, {p}branch_code) IN (SELECT (bank_code, branch_code) FROM banks)")


def connect(threads: int | None = None, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the reference tables `banks` and `municipalities`."""
    from engine import reference  # reference data only

    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {threads}")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("SET preserve_insertion_order = false")
    branches = reference.branches().select("bank_code", "branch_code").to_arrow()
    municipalities = reference.municipalities().select("municipality_code").to_arrow()
    con.execute("CREATE TABLE banks AS SELECT * FROM branches")
    con.execute("CREATE TABLE municipalities AS SELECT * FROM municipalities")
    return con


def residents(con: duckdb.DuckDBPyConnection, inputs: Path, run_date: date) -> None:
    """Valid residents as of the run date, one row per (my_number, household_id)."""
    d = f"DATE '{run_date}'"
    con.execute(f"""
    CREATE OR REPLACE TABLE residents AS
    WITH numbered AS (
        SELECT *, row_number() OVER (PARTITION BY my_number, household_id
                                     ORDER BY filename, file_row_number) AS copy
        FROM {source(inputs, 'residents')}
    ),
    dated AS (
        SELECT my_number, household_id, is_head, family_name_kana, given_name_kana, birth_date, sex,
               municipality_code, registered_on, filename, file_row_number,
               CASE WHEN moved_out_on <= {d} THEN moved_out_on END AS moved_out_on,
               CASE WHEN died_on <= {d} THEN died_on END AS died_on
        FROM numbered WHERE copy = 1
    )
    SELECT * EXCLUDE (filename, file_row_number),
           row_number() OVER (ORDER BY filename, file_row_number) AS pos
    FROM dated
    WHERE my_number IS NOT NULL AND household_id IS NOT NULL AND is_head IS NOT NULL
      AND family_name_kana IS NOT NULL AND given_name_kana IS NOT NULL AND birth_date IS NOT NULL
      AND municipality_code IS NOT NULL AND registered_on IS NOT NULL
      AND {check_digit_ok('my_number')}
      AND municipality_code IN (SELECT municipality_code FROM municipalities)
      AND sex IN ('M', 'F')
      AND NOT (birth_date > {d} AND registered_on <= {d})
      AND registered_on >= birth_date
      AND (died_on IS NULL OR died_on >= birth_date)
      AND (moved_out_on IS NULL OR moved_out_on >= registered_on)
    """)


def accounts(con: duckdb.DuckDBPyConnection, inputs: Path, run_date: date) -> None:
    """Valid accounts linked by the run date: the latest link per My Number."""
    con.execute(f"""
    CREATE OR REPLACE TABLE accounts AS
    SELECT my_number, bank_code, branch_code, account_type, account_number, holder_name_kana
    FROM {source(inputs, 'accounts')}
    WHERE my_number IS NOT NULL AND linked_on <= DATE '{run_date}'
      AND {check_digit_ok('my_number')} AND {bank_ok()}
    QUALIFY row_number() OVER (PARTITION BY my_number
                               ORDER BY linked_on DESC, filename DESC, file_row_number DESC) = 1
    """)


def applications(con: duckdb.DuckDBPyConnection, inputs: Path, run_date: date) -> None:
    """Valid applications received by the run date, for households on the register (the first row
    of a repeated application_id only)."""
    con.execute(f"""
    CREATE OR REPLACE TABLE applications AS
    WITH numbered AS (
        SELECT *, row_number() OVER (PARTITION BY application_id ORDER BY filename, file_row_number) AS copy,
               row_number() OVER (ORDER BY filename, file_row_number) AS pos
        FROM {source(inputs, 'applications')}
    )
    SELECT * EXCLUDE (copy, filename, file_row_number)
    FROM numbered
    WHERE copy = 1 AND application_id IS NOT NULL AND household_id IS NOT NULL
      AND applicant_my_number IS NOT NULL AND received_on <= DATE '{run_date}'
      AND {check_digit_ok('applicant_my_number')}
      AND channel IN ('mail', 'online')
      AND NOT coalesce(list_contains(declined_my_numbers, -1), false)
      AND {bank_ok()}
      AND household_id IN (SELECT household_id FROM residents)
    """)


def members(con: duckdb.DuckDBPyConnection, basis: date = BASIS) -> None:
    """Residents with `eligible` on the basis date, `living` and `declined` (opted out on a usable
    application of their household)."""
    b = f"DATE '{basis}'"
    con.execute(f"""
    CREATE OR REPLACE TABLE members AS
    WITH declined AS (
        SELECT DISTINCT household_id, unnest(declined_my_numbers) AS my_number FROM applications
    )
    SELECT r.*,
           (r.birth_date <= {b} AND (r.died_on IS NULL OR r.died_on >= {b})
            AND r.registered_on <= {b} AND (r.moved_out_on IS NULL OR r.moved_out_on > {b})) AS eligible,
           r.died_on IS NULL AS living,
           dcl.my_number IS NOT NULL AS declined
    FROM residents r LEFT JOIN declined dcl USING (household_id, my_number)
    """)


def households(con: duckdb.DuckDBPyConnection, amount_yen: int = AMOUNT_YEN) -> duckdb.DuckDBPyRelation:
    """One row per household: ¥amount × eligible members not declined, 0 without a living
    eligible member."""
    con.execute(f"""
    CREATE OR REPLACE TABLE households AS
    SELECT household_id,
           count(*) FILTER (WHERE eligible AND NOT declined) AS counted_members,
           count(*) FILTER (WHERE eligible AND living) AS living_members,
           (CASE WHEN count(*) FILTER (WHERE eligible AND living) > 0
                 THEN count(*) FILTER (WHERE eligible AND NOT declined) * {amount_yen} ELSE 0 END)::BIGINT
               AS entitled_yen
    FROM members GROUP BY household_id
    """)
    return con.table("households")


def payees(con: duckdb.DuckDBPyConnection) -> None:
    """Entitled households with their payee and account (`account_source` linked_account /
    application / none)."""
    con.execute("""
    CREATE OR REPLACE TABLE payees AS
    WITH payee AS (
        SELECT household_id,
               arg_min(my_number, (NOT is_head, birth_date, pos)) AS payee_my_number,
               arg_min(family_name_kana, (NOT is_head, birth_date, pos)) AS payee_family_name_kana
        FROM members WHERE eligible AND living GROUP BY household_id
    ),
    application AS (
        SELECT a.household_id,
               arg_min(a.bank_code || '-' || a.branch_code || '-' || a.account_type || '-' || a.account_number,
                       (a.applicant_my_number IS DISTINCT FROM p.payee_my_number, a.received_on, a.pos))
                   AS account
        FROM applications a LEFT JOIN payee p USING (household_id)
        GROUP BY a.household_id
    )
    SELECT h.household_id, h.entitled_yen, p.payee_my_number, p.payee_family_name_kana,
           CASE WHEN acc.my_number IS NOT NULL THEN 'linked_account'
                WHEN app.account IS NOT NULL THEN 'application' ELSE 'none' END AS account_source,
           coalesce(acc.bank_code || '-' || acc.branch_code || '-' || acc.account_type || '-'
                    || acc.account_number, app.account) AS account
    FROM households h
    LEFT JOIN payee p USING (household_id)
    LEFT JOIN accounts acc ON acc.my_number = p.payee_my_number
    LEFT JOIN application app ON app.household_id = h.household_id
    WHERE h.entitled_yen > 0
    """)


def shared_accounts(con: duckdb.DuckDBPyConnection, min_households: int = 2) -> None:
    """Households paid into an account that receives for ≥ `min_households` households whose payees
    have ≥ 2 family names (long vowel mark read as ウ, spaces dropped)."""
    con.execute(f"""
    CREATE OR REPLACE TABLE shared_accounts AS
    WITH paid AS (
        SELECT household_id, account,
               replace(replace(replace(payee_family_name_kana, ' ', ''), '　', ''), 'ー', 'ウ') AS family
        FROM payees WHERE account IS NOT NULL
    ),
    shared AS (
        SELECT account FROM paid GROUP BY account
        HAVING count(DISTINCT household_id) >= {min_households} AND count(DISTINCT family) >= 2
    )
    SELECT household_id, account FROM paid WHERE account IN (SELECT account FROM shared)
    """)


def points(con: duckdb.DuckDBPyConnection, inputs: Path, run_date: date, *, rate_percent: int = RATE_PERCENT,
           cap_yen: int = CAP_YEN, window: tuple[date, date] = WINDOW) -> duckdb.DuckDBPyRelation:
    """Mynapoint grants: every qualifying transaction by the end of the run date earns
    floor(rate × amount), in order of occurrence per person, under the cap: the running sum of
    points clipped at the cap, granted = min(sum up to it, cap) − min(sum before it, cap).

    Qualifying: a valid charge/purchase (first row of its transaction_id, amount > 0, known
    wallet) of the kind its service rewards, inside the window, on or after the wallet's
    registration, by a person on the register, not after their death. No refunds (they are
    left out), no wallet holds: see the module doc.
    """
    start = datetime.combine(window[0], datetime.min.time())
    end = datetime.combine(window[1] + timedelta(days=1), datetime.min.time())
    tonight = datetime.combine(run_date + timedelta(days=1), datetime.min.time())
    earns = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in EARNS_ON.items())
    con.execute(f"""
    CREATE OR REPLACE TABLE points AS
    WITH persons AS (
        SELECT my_number, min(died_on) AS died_on FROM residents GROUP BY my_number
    ),
    owners AS (
        SELECT w.wallet_id, w.my_number, w.registered_on, CASE s.kind {earns} END AS earning_kind, p.died_on
        FROM read_parquet('{inputs / 'wallets'}/**/*.parquet') w
        JOIN persons p USING (my_number)
        JOIN read_parquet('{inputs / 'services.parquet'}') s USING (service_id)
        QUALIFY row_number() OVER (PARTITION BY w.wallet_id ORDER BY w.registered_on) = 1
    ),
    earning AS (
        SELECT t.transaction_id, t.occurred_at, o.my_number,
               (t.amount_yen * {rate_percent}) // 100 AS points_full
        FROM {source(inputs, 'transactions')} t JOIN owners o USING (wallet_id)
        WHERE t.kind = o.earning_kind AND t.amount_yen > 0 AND t.refund_of IS NULL
          AND t.occurred_at >= TIMESTAMP '{start}' AND t.occurred_at < TIMESTAMP '{end}'
          AND t.occurred_at < TIMESTAMP '{tonight}'
          AND CAST(t.occurred_at AS DATE) >= o.registered_on
          AND (o.died_on IS NULL OR CAST(t.occurred_at AS DATE) <= o.died_on)
        QUALIFY row_number() OVER (PARTITION BY t.transaction_id ORDER BY t.filename, t.file_row_number) = 1
    ),
    running AS (
        SELECT *, sum(points_full) OVER (PARTITION BY my_number ORDER BY occurred_at, transaction_id
                                         ROWS UNBOUNDED PRECEDING) AS points_to_date
        FROM earning
    )
    SELECT transaction_id, my_number, occurred_at, points_full,
           (least(points_to_date, {cap_yen}) - least(points_to_date - points_full, {cap_yen}))::BIGINT
               AS points_yen
    FROM running
    """)
    return con.table("points")


STEPS: dict[str, Callable[..., object]] = {
    "residents": residents, "accounts": accounts, "applications": applications, "members": members,
    "households": households, "payees": payees, "shared_accounts": shared_accounts, "points": points,
}
NEEDS_INPUTS = {"residents", "accounts", "applications", "points"}


@dataclass
class BaselineReport:
    step_seconds: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)


def run_steps(con: duckdb.DuckDBPyConnection, inputs: Path, run_date: date, steps: tuple[str, ...],
              report: BaselineReport | None = None) -> BaselineReport:
    """Run the given steps in order on `con`, timing each (each one materialises a table)."""
    report = report or BaselineReport()
    for name in steps:
        started = time.perf_counter()
        if name in NEEDS_INPUTS:
            STEPS[name](con, inputs, run_date)
        else:
            STEPS[name](con)
        report.step_seconds[name] = round(time.perf_counter() - started, 3)
    return report


BENEFIT_STEPS = ("residents", "accounts", "applications", "members", "households")
ALL_STEPS = (*BENEFIT_STEPS, "payees", "shared_accounts", "points")


def run(inputs: Path, run_date: date, *, threads: int | None = None,
        memory_limit: str | None = None) -> tuple[BaselineReport, duckdb.DuckDBPyConnection]:
    """The whole baseline night: every step, then its row counts and yen totals."""
    con = connect(threads, memory_limit)
    report = run_steps(con, inputs, run_date, ALL_STEPS)
    for table in ALL_STEPS:
        report.rows[table] = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    entitled, = con.execute("SELECT sum(entitled_yen) FROM households").fetchall()[0]
    granted, = con.execute("SELECT coalesce(sum(points_yen), 0) FROM points").fetchall()[0]
    report.totals = {"entitled_yen": int(entitled or 0), "points_granted_yen": int(granted)}
    report.step_seconds["total"] = round(sum(report.step_seconds.values()), 3)
    return report, con


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--date", type=date.fromisoformat, default=date(2021, 12, 31))
    args = parser.parse_args()
    result, _ = run(args.inputs, args.date)
    print(json.dumps({"step_seconds": result.step_seconds, "rows": result.rows, "totals": result.totals},
                     indent=2))
