"""check_national.py finds a night in agreement with the independent rules, and finds it out when
one household's entitled yen is changed after the night."""

from __future__ import annotations

import importlib.util
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest

from engine.config import RunConfig
from pipelines import generate, nightly

RUN_DATE = date(2021, 12, 31)
# benchmarks/ is not a package and not on sys.path under pytest's importlib mode
_spec = importlib.util.spec_from_file_location("check_national", Path(__file__).with_name("check_national.py"))
check_national = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_national)


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("check")
    generate.generate(residents=20_000, seed=3, out=root / "inputs")
    nightly.run(root / "inputs", root / "night" / "state", root / "night" / "out", RUN_DATE, RunConfig(), shards=2)
    return root / "inputs", root / "night"


def test_a_night_agrees_with_the_independent_rules(night: tuple[Path, Path], tmp_path: Path) -> None:
    inputs, folder = night
    result = check_national.rules_against_night(inputs, folder / "out" / RUN_DATE.isoformat(), RUN_DATE,
                                                tmp_path / "spill", "1GB")
    assert check_national.agrees(result), result
    assert result["rules_households"] == result["night_households"] > 8_000
    assert result["night_entitled_yen"] > 0 and result["night_entitled_yen"] % 100_000 == 0


def test_a_household_owed_other_yen_is_found(night: tuple[Path, Path], tmp_path: Path) -> None:
    inputs, folder = night
    run_dir = tmp_path / "night"
    shutil.copytree(folder / "out" / RUN_DATE.isoformat(), run_dir)
    with duckdb.connect(str(run_dir / "analyst.duckdb")) as con:  # a sharded night's views, over Parquet
        con.execute("CREATE OR REPLACE TABLE tampered AS SELECT * FROM households")
        con.execute("UPDATE tampered SET entitled_yen = entitled_yen + 100000 "
                    "WHERE household_id = (SELECT min(household_id) FROM tampered WHERE entitled_yen > 0)")
        con.execute("CREATE OR REPLACE VIEW households AS SELECT * FROM tampered")
    result = check_national.rules_against_night(inputs, run_dir, RUN_DATE, tmp_path / "spill", "1GB")
    assert not check_national.agrees(result)
    assert result["yen_differ"] == 1
    assert result["night_entitled_yen"] - result["rules_entitled_yen"] == 100_000
