"""A night checked against independent references, at any size up to the nation.

1. The rules: every household's entitled yen from tests/reference_rules.py (plain DuckDB SQL
   that shares no code with the engine) against the night's analyst `households`, compared in
   DuckDB: households on each side, missing on either side, differing in yen, the yen totals;
   a household the rules give an account to is never awaiting, one without is never paid.
2. The planted faults: `kyufu evaluate`'s precision and recall of every check against the
   generator's truth (engine/evaluate.py).

DuckDB runs under a memory limit and spills to --temp: at 125M the rules' grouping of the
register is larger than memory. Prints counts and yen only, never a My Number. Exit 1 when the
rules and the night disagree.

    .venv/bin/python benchmarks/national.py --inputs /tmp/nation/inputs --runs 1 --keep
    .venv/bin/python benchmarks/check_national.py --inputs /tmp/nation/inputs \\
        --night /tmp/kyufu-national/125000000-seed2020/night
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import reference_rules  # noqa: E402  (tests/: the independent rules)


def rules_against_night(inputs: Path, run_dir: Path, run_date: date, temp: Path, memory_limit: str) -> dict:
    """The comparison's counts and totals (see the module doc)."""
    temp.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET temp_directory = '{temp}'")
    con.execute("SET preserve_insertion_order = false")
    sql = reference_rules.households_sql(con, inputs, run_date)
    started = time.perf_counter()
    con.execute(f"CREATE TABLE rules AS {sql}")
    rules_seconds = time.perf_counter() - started
    con.execute(f"ATTACH '{run_dir / 'analyst.duckdb'}' AS night (READ_ONLY)")
    row = con.execute("""
        SELECT count(r.household_id) AS rules_households,
               count(n.household_id) AS night_households,
               count(*) FILTER (WHERE n.household_id IS NULL) AS missing_in_night,
               count(*) FILTER (WHERE r.household_id IS NULL) AS missing_in_rules,
               count(*) FILTER (WHERE r.entitled_yen IS DISTINCT FROM n.entitled_yen) AS yen_differ,
               coalesce(sum(r.entitled_yen), 0)::BIGINT AS rules_entitled_yen,
               coalesce(sum(n.entitled_yen), 0)::BIGINT AS night_entitled_yen,
               count(*) FILTER (WHERE r.has_account AND n.status = 'awaiting') AS awaiting_with_account,
               count(*) FILTER (WHERE NOT r.has_account AND n.status = 'paid') AS paid_without_account
        FROM rules r FULL JOIN (SELECT household_id, status, entitled_yen FROM night.households) n
             USING (household_id)
    """).fetchone()
    names = ["rules_households", "night_households", "missing_in_night", "missing_in_rules", "yen_differ",
             "rules_entitled_yen", "night_entitled_yen", "awaiting_with_account", "paid_without_account"]
    result = dict(zip(names, (int(x) for x in row)))
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["rules_seconds"] = round(rules_seconds, 1)
    con.close()
    shutil.rmtree(temp, ignore_errors=True)
    return result


def agrees(result: dict) -> bool:
    return (result["missing_in_night"] == result["missing_in_rules"] == result["yen_differ"]
            == result["awaiting_with_account"] == result["paid_without_account"] == 0
            and result["rules_entitled_yen"] == result["night_entitled_yen"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--night", type=Path, required=True,
                        help="a folder holding the night's `state` and `out` (national.py --keep leaves one)")
    parser.add_argument("--date", type=date.fromisoformat, default=date(2021, 12, 31))
    parser.add_argument("--memory-limit", default="12GB")
    parser.add_argument("--temp", type=Path, default=Path(tempfile.gettempdir()) / "kyufu-check-spill")
    parser.add_argument("--no-evaluate", action="store_true")
    args = parser.parse_args()
    run_dir = args.night / "out" / args.date.isoformat()
    if not (run_dir / "analyst.duckdb").exists():
        raise SystemExit(f"no analyst database in {run_dir}: pass the folder national.py --keep leaves")

    result = rules_against_night(args.inputs, run_dir, args.date, args.temp, args.memory_limit)
    print(json.dumps({"rules": result}, indent=2))
    if not args.no_evaluate:
        from engine import evaluate

        started = time.perf_counter()
        scores = evaluate.evaluation(run_dir, args.night / "state", args.inputs)
        print(f"evaluate: {time.perf_counter() - started:.1f} s")
        with pl.Config(tbl_rows=40, tbl_width_chars=140):
            print(scores)
    if not agrees(result):
        raise SystemExit("the night and the independent rules disagree (counts above)")
    print(f"the night agrees with the independent rules on {result['rules_households']:,} households, "
          f"¥{result['rules_entitled_yen']:,} entitled")


if __name__ == "__main__":
    main()
