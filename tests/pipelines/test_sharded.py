"""The sharded night (pipelines/sharded.py) decides exactly what the night in one piece decides:
the same households paid, held and denied, the same person keys, points, ledger, transfer and
settlement files byte for byte, night after night, with files sent and holds decided between
nights; a re-run changes nothing; a killed sharded night leaves the state as it was."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from engine.config import RunConfig
from engine.errors import ReconciliationError, StateError
from engine.ingest import ROW
from engine.state import SCHEMAS, Store
from pipelines import generate, nightly, operations, sharded

NIGHTS = [date(2020, 5, 29), date(2020, 6, 30), date(2021, 12, 31)]
CFG = RunConfig()
SHARDS = 3


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sharded") / "inputs"
    generate.generate(residents=20_000, seed=5, out=folder)
    return folder


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(pl.all()) if frame.height else frame


def _analyst(run_dir: Path) -> dict[str, pl.DataFrame]:
    with duckdb.connect(str(run_dir / "analyst.duckdb"), read_only=True) as con:
        names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        return {name: pl.from_arrow(con.sql(f"SELECT * FROM {name}").to_arrow_table()) for name in names}


def _files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes()
            for folder in ("zengin", "settlement") for p in sorted((run_dir / folder).rglob("*")) if p.is_file()}


def assert_same_night(plain: nightly.RunReport, sharded: nightly.RunReport) -> None:
    assert sharded.shards == SHARDS and plain.shards == 0
    one, other = (json.loads((r.run_dir / "run.json").read_text()) for r in (plain, sharded))
    for section in ("counts", "totals_yen", "rejects_by_reason", "holds_by_reason", "not_eligible_by_reason"):
        assert one[section] == other[section], section
    assert _files(plain.run_dir) == _files(sharded.run_dir)
    mine, theirs = _analyst(plain.run_dir), _analyst(sharded.run_dir)
    assert mine.keys() == theirs.keys()
    for name in mine:
        assert _sorted(mine[name]).equals(_sorted(theirs[name])), name


def assert_same_state(plain: Path, sharded: Path) -> None:
    one, other = Store(plain).head(), Store(sharded).head()
    assert other.shards == SHARDS and other.paths("positions")[0].name == "positions.s000.parquet"
    for name in SCHEMAS:
        if name != "shard_map":
            assert _sorted(one.table(name)).equals(_sorted(other.table(name))), name


def test_sharded_nights_decide_what_plain_nights_decide(inputs: Path, tmp_path: Path) -> None:
    roots = {0: tmp_path / "plain", SHARDS: tmp_path / "sharded"}
    for i, night in enumerate(NIGHTS):
        reports = {n: nightly.run(inputs, root / "state", root / "out", night, CFG, shards=n)
                   for n, root in roots.items()}
        assert reports[0].totals["paid_tonight_yen"] > 0 or i == 2
        assert_same_night(reports[0], reports[SHARDS])
        assert_same_state(roots[0] / "state", roots[SHARDS] / "state")
        if i == 0:  # between the nights: files sent, holds released and denied, the same in both
            holds = operations.holds(roots[0] / "state")
            assert holds.height == operations.holds(roots[SHARDS] / "state").height > 5
            decisions = pl.concat([
                holds.head(3).select("hold_id", decision=pl.lit("release")),
                holds.tail(2).select("hold_id", decision=pl.lit("deny")),
            ]).with_columns(decided_by=pl.lit("supervisor"), decided_on=pl.lit(night), note=pl.lit("reviewed"))
            for root in roots.values():
                sent = operations.files(root / "state", "produced")["transfer_file"].to_list()
                operations.mark_sent(root / "state", sent, "ops", night)
                operations.record_decisions(root / "state", decisions, "test")
    # a re-run of the last night changes nothing
    again = nightly.run(inputs, roots[SHARDS] / "state", roots[SHARDS] / "out", NIGHTS[-1], CFG)
    assert again.mode == "rerun" and again.unchanged and again.shards == SHARDS


def test_persons_paid_then_moved_to_another_shard_are_not_paid_again(inputs: Path, tmp_path: Path) -> None:
    # night 1 pays everyone; by night 2, some paid members have moved into households of other
    # municipalities, some of them in other shards: their shares are not counted again
    # (paid_in_another_household), in shards as in one piece
    roots = {0: tmp_path / "plain", SHARDS: tmp_path / "sharded"}
    for n, root in roots.items():
        nightly.run(inputs, root / "state", root / "out", NIGHTS[0], CFG, shards=n)
    moved_inputs = tmp_path / "moved"
    shutil.copytree(inputs, moved_inputs)
    path = next((moved_inputs / "residents").glob("*.parquet"))
    residents = pl.read_parquet(path).with_row_index("__i")
    shard_of = Store(roots[SHARDS] / "state").head().table("shard_map")
    paid = Store(roots[0] / "state").head().table("paid_persons")
    persons = Store(roots[0] / "state").head().table("persons")
    movers = (
        residents.filter(~pl.col("is_head") & pl.col("died_on").is_null())
        .join(persons.join(paid, on="person_key", how="semi"), on="my_number", how="semi")
        .sample(60, seed=1)
    )
    targets = residents.filter(pl.col("is_head")).sample(60, seed=2).select(
        pl.col("household_id").alias("to_household"), pl.col("municipality_code").alias("to_municipality"))
    moves = pl.concat([movers.select("__i", "municipality_code"), targets], how="horizontal").filter(
        pl.col("municipality_code") != pl.col("to_municipality"))
    crossing = moves.join(shard_of, on="municipality_code").join(
        shard_of.rename({"municipality_code": "to_municipality", "shard": "to_shard"}), on="to_municipality"
    ).filter(pl.col("shard") != pl.col("to_shard"))
    assert crossing.height >= 10
    residents = residents.join(moves.drop("municipality_code"), on="__i", how="left").with_columns(
        pl.coalesce("to_household", "household_id").alias("household_id"),
        pl.coalesce("to_municipality", "municipality_code").alias("municipality_code"),
    ).drop("__i", "to_household", "to_municipality")
    residents.write_parquet(path)
    reports = {n: nightly.run(moved_inputs, root / "state", root / "out", NIGHTS[1], CFG, shards=n)
               for n, root in roots.items()}
    assert_same_night(reports[0], reports[SHARDS])
    assert_same_state(roots[0] / "state", roots[SHARDS] / "state")
    told = json.loads((reports[SHARDS].run_dir / "run.json").read_text())["not_eligible_by_reason"]
    assert told.get("paid_in_another_household", 0) >= crossing.height


def test_a_state_keeps_the_shard_count_of_its_first_night(inputs: Path, tmp_path: Path) -> None:
    state_dir, out = tmp_path / "state", tmp_path / "out"
    nightly.run(inputs, state_dir, out, NIGHTS[0], CFG, shards=2)
    with pytest.raises(StateError, match="kept in 2 shards; this night asked for 3"):
        nightly.run(inputs, state_dir, out, NIGHTS[1], CFG, shards=3)
    assert nightly.run(inputs, state_dir, out, NIGHTS[1], CFG).shards == 2


def test_a_plain_state_is_not_continued_in_shards(inputs: Path, tmp_path: Path) -> None:
    state_dir, out = tmp_path / "state", tmp_path / "out"
    nightly.run(inputs, state_dir, out, NIGHTS[0], CFG)
    with pytest.raises(StateError, match="kept in no shards"):
        nightly.run(inputs, state_dir, out, NIGHTS[1], CFG, shards=2)


def _kyufu(args: list[str], crash_at: str | None = None) -> subprocess.CompletedProcess:
    """The CLI in a subprocess; KYUFU_CRASH_AT kills it with SIGKILL when that stage starts."""
    env = {**os.environ, "KYUFU_CRASH_AT": crash_at or ""}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("point", ["checks", "outputs"])
def test_a_killed_sharded_night_leaves_the_state_as_it_was(inputs: Path, tmp_path: Path, point: str) -> None:
    def args(night: date, root: Path) -> list[str]:
        return ["run", "--inputs", str(inputs), "--state", str(root / "state"), "--out", str(root / "out"),
                "--date", night.isoformat(), "--shards", str(SHARDS), "--work-dir", str(root / "spill")]

    reference, killed = tmp_path / "reference", tmp_path / "killed"
    for root in (reference, killed):
        assert _kyufu(args(NIGHTS[0], root)).returncode == 0
    assert _kyufu(args(NIGHTS[1], reference)).returncode == 0
    before = Store(killed / "state").head()
    assert _kyufu(args(NIGHTS[1], killed), crash_at=point).returncode == -signal.SIGKILL
    assert Store(killed / "state").head().number == before.number
    assert not (killed / "out" / NIGHTS[1].isoformat()).exists()
    result = _kyufu(args(NIGHTS[1], killed))
    assert result.returncode == 0, result.stderr
    assert _files(killed / "out" / NIGHTS[1].isoformat()) == _files(reference / "out" / NIGHTS[1].isoformat())
    one, other = Store(reference / "state").head(), Store(killed / "state").head()
    assert one.number == other.number
    for name in SCHEMAS:
        assert one.table(name).equals(other.table(name)), name
    assert not [p for p in (killed / "spill").iterdir()], "the killed night's spill was not cleaned"


def test_a_sharded_night_publishes_views_over_its_parquet(inputs: Path, tmp_path: Path) -> None:
    report = nightly.run(inputs, tmp_path / "state", tmp_path / "out", NIGHTS[0], CFG, shards=2)
    with duckdb.connect(str(report.run_dir / "analyst.duckdb"), read_only=True) as con:
        kinds = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables").fetchall())
        persons = con.execute("SELECT count(*) FROM persons").fetchone()
    assert set(kinds.values()) == {"VIEW"} and "households" in kinds and "points" in kinds
    record = json.loads((report.run_dir / "run.json").read_text())
    assert persons[0] == record["outputs"]["analyst_database"]["tables"]["persons"]["rows"] > 19_000
    # the database is written once the night is in place: a run killed just before gets it back
    (report.run_dir / "analyst.duckdb").unlink()
    again = nightly.run(inputs, tmp_path / "state", tmp_path / "out", NIGHTS[0], CFG)
    assert again.mode == "rerun" and again.unchanged
    with duckdb.connect(str(report.run_dir / "analyst.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM persons").fetchone()[0] == persons[0]


def test_a_sharded_night_removes_its_scratch_once_nothing_reads_it(inputs: Path, tmp_path: Path,
                                                                  monkeypatch) -> None:
    seen: dict[str, list[str]] = {}
    merge = sharded._analyst_tables

    def look_then_merge(work: Path, *args, **kwargs):  # after the shard loop, before the merge
        seen.update({p.name: sorted(c.name for c in p.iterdir()) for p in work.iterdir() if p.is_dir()})
        seen["routed"] = sorted(f"{c.parent.name}/{c.name}" for c in (work / "routed").glob("*/*"))
        return merge(work, *args, **kwargs)

    monkeypatch.setattr(sharded, "_analyst_tables", look_then_merge)
    report = nightly.run(inputs, tmp_path / "state", tmp_path / "out", NIGHTS[-1], CFG, shards=SHARDS,
                         work_dir=tmp_path / "spill")
    assert {f"shard-{k}" for k in range(SHARDS)} <= seen.keys()
    assert all(seen[f"shard-{k}"] == ["05_tables"] for k in range(SHARDS)), seen  # only the analyst parts
    assert "across" not in seen and "keys" not in seen
    assert seen["routed"] == [] and seen["points_persons"] == [], seen
    assert report.counts["transactions_rows"] > 0 and not any((tmp_path / "spill").iterdir())


def test_the_shard_count_follows_the_register_and_the_memory() -> None:
    from pipelines.sharded import shards_for

    gb = 2**30
    assert shards_for(1_000_000, available=20 * gb) == 0  # one piece
    assert shards_for(10_000_000, available=20 * gb) == 2
    assert shards_for(125_113_158, available=20 * gb) == 26  # the nation: one shard per 5M
    assert shards_for(125_113_158, available=6 * gb) == 59  # less memory: shards of 2.1M
    assert shards_for(1_000_000, available=1 * gb) == 3


def test_person_keys_set_beside_the_residents_equal_the_join_and_are_checked() -> None:
    residents = pl.LazyFrame({ROW: [4, 7, 9, 12], "my_number": [30, 10, 30, 20], "household_id": [1, 1, 2, 3]})
    by_number = pl.LazyFrame({"my_number": [10, 20, 30], "person_key": [2, 3, 1]})
    joined = residents.join(by_number, on="my_number", how="left", maintain_order="left").collect()
    aligned = pl.LazyFrame({ROW: [4, 7, 9, 12], "person_key": [1, 2, 1, 3]})
    assert nightly.keyed_residents(residents, aligned).collect().equals(joined)
    for wrong in ({ROW: [7, 4, 9, 12], "person_key": [2, 1, 1, 3]},  # another order
                  {ROW: [4, 7, 9], "person_key": [1, 2, 1]}):  # a row short
        with pytest.raises(ReconciliationError, match="person keys do not line up with the valid residents"):
            nightly.keyed_residents(residents, pl.LazyFrame(wrong))


def test_the_members_checkpoint_holds_what_entitle_adds_and_reads_back_as_the_members(inputs: Path,
                                                                                   tmp_path: Path) -> None:
    from engine import entitle

    v = nightly.validated(nightly.plan_inputs(inputs), tmp_path / "work", NIGHTS[-1])
    keys = v.valid_residents.select("my_number").unique().sort("my_number").with_row_index("person_key", 1) \
        .with_columns(pl.col("person_key").cast(pl.Int64))
    residents = v.valid_residents.join(keys, on="my_number", how="left", maintain_order="left")
    # persons paid (the state holds one row each) with another household (every 7th) or with
    # their own (every 11th)
    paid = (
        residents.select("person_key", pl.when(pl.col("person_key") % 7 == 0).then(-pl.col("household_id"))
                         .otherwise(pl.col("household_id")).alias("household_id"))
        .filter((pl.col("person_key") % 7 == 0) | (pl.col("person_key") % 11 == 0))
        .unique("person_key", keep="first", maintain_order=True)
    )
    members, _, _ = nightly.entitled(v, keys, paid, CFG, tmp_path / "work")
    expected = (entitle.eligible_members(residents, entitle.declined_members(v.usable_applications), CFG.benefit)
                .pipe(entitle.without_paid_elsewhere, paid).collect())
    got = members.collect()
    assert got.equals(expected)
    assert got["is_declined"].any() and (got["not_eligible_reason"] == "paid_in_another_household").any()
    checkpoint = pl.read_parquet_schema(tmp_path / "work" / "03_entitle" / "members.parquet")
    # the residents' own columns are not written again
    assert tuple(checkpoint) == ("person_key", "is_declined", "not_eligible_reason", "is_eligible", "is_living",
                                 "is_counted")
