"""The engine against a hand-written DuckDB SQL baseline (benchmarks/baseline_sql.py), in the same
process, on the same generated inputs: validate + entitle, points, and the whole night.

Each case is parametrised by `side` (engine / baseline) in one benchmark group; at the end of the
module the ratio engine / baseline of each group is written under the test report (median of the
rounds; with `--benchmark-disable`, the CI default, each side runs once and the ratio of those
single runs is shown). The entitlement case also asserts that both sides find the same yen for
every household, so that they do the same work.

The baseline does less than the engine in the same stages (no reject tables, no refunds or
holds in points, no checks, files or ledger in the night: see baseline_sql's module doc), so a
ratio above 1 is the price of those, not only of speed.

Measure (the 1M and 10M cases are `slow`):

    .venv/bin/pytest benchmarks/test_baseline.py --benchmark-enable -m ""
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from engine import entitle, ingest, point_checks, points, schemas, validate
from engine.config import RunConfig
from pipelines import nightly


def _load_baseline():
    """benchmarks/baseline_sql.py (benchmarks/ is not a package and not on sys.path under
    pytest's importlib mode; national.py imports it the same way)."""
    import importlib.util
    import sys

    if "baseline_sql" not in sys.modules:
        spec = importlib.util.spec_from_file_location("baseline_sql", Path(__file__).with_name("baseline_sql.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules["baseline_sql"] = module
        spec.loader.exec_module(module)
    return sys.modules["baseline_sql"]


baseline_sql = _load_baseline()
CFG = RunConfig()
# the end of the campaign: every application and transaction has arrived (the biggest night)
RUN_DATE = date(2021, 12, 31)
SIZES = [100_000, pytest.param(1_000_000, marks=pytest.mark.slow),
         pytest.param(10_000_000, marks=pytest.mark.slow)]
ROUNDS = {100_000: 3, 1_000_000: 3, 10_000_000: 1}
SIDES = ["engine", "baseline"]

_seconds: dict[tuple[str, int], dict[str, list[float]]] = {}  # (case, n) → side → seconds per round
_entitled: dict[tuple[int, str], pl.DataFrame] = {}  # (n, side) → household_id, entitled_yen


def _inputs(request: pytest.FixtureRequest, n: int) -> Path:
    return request.getfixturevalue({100_000: "inputs_100k", 1_000_000: "inputs_1m",
                                    10_000_000: "inputs_10m"}[n])


def _timed(case: str, n: int, side: str, fn):
    """fn, recording each call's wall seconds for the ratio printed at the end of the module."""
    def call(*args, **kwargs):
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        _seconds.setdefault((case, n), {}).setdefault(side, []).append(time.perf_counter() - started)
        return result
    return call


@pytest.fixture(scope="module", autouse=True)
def _ratios(request: pytest.FixtureRequest):
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    lines = []
    for (case, n), sides in sorted(_seconds.items()):
        if set(SIDES) <= set(sides):
            e, b = statistics.median(sides["engine"]), statistics.median(sides["baseline"])
            lines.append(f"{case}|{n}: engine {e:.3f} s, baseline {b:.3f} s, engine / baseline = {e / b:.2f}x")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter and capture and lines:
        with capture.global_and_fixture_disabled():  # teardown output is captured otherwise
            reporter.write_line("")
            reporter.write_sep("-", "engine vs DuckDB SQL baseline (median seconds)")
            for line in lines:
                reporter.write_line(line)


# ---- validate + entitle ----------------------------------------------------------------------------


def engine_entitlements(inputs: Path, run_date: date = RUN_DATE, cfg: RunConfig = CFG) -> pl.DataFrame:
    """validate → persons → entitle as pipelines/nightly.py calls them, on a fresh state
    (checkpoints collected in memory instead of sunk to Parquet): one row per household."""
    scanned = {c.name: ingest.scan(c, inputs)[0] for c in (schemas.RESIDENTS, schemas.ACCOUNTS, schemas.APPLICATIONS)}
    residents = validate.checked_residents(scanned["residents"], run_date).collect().lazy()
    accounts = validate.checked_accounts(scanned["accounts"], run_date).collect().lazy()
    household_ids = residents.filter(pl.col("reject_reason").is_null()).select("household_id")
    applications = validate.checked_applications(scanned["applications"], household_ids, run_date).collect().lazy()
    valid_residents = residents.filter(pl.col("reject_reason").is_null())
    known = pl.DataFrame(schema={"my_number": pl.Int64, "person_key": pl.Int64})
    keys = nightly.person_keys(known, valid_residents)
    usable_accounts = accounts.filter(pl.col("reject_reason").is_null() & ~pl.col("is_pending"))
    usable_applications = applications.filter(pl.col("reject_reason").is_null() & ~pl.col("is_pending"))
    members = entitle.eligible_members(
        valid_residents.join(keys.lazy(), on="my_number", how="left", maintain_order="left"),
        entitle.declined_members(usable_applications), cfg.benefit,
    ).collect()
    usable_accounts.select(pl.len()).collect()  # the night materialises accounts too
    return entitle.household_entitlements(members.lazy(), cfg.benefit).collect()


def baseline_entitlements(inputs: Path, run_date: date = RUN_DATE) -> pl.DataFrame:
    con = baseline_sql.connect()
    try:
        baseline_sql.run_steps(con, inputs, run_date, baseline_sql.BENEFIT_STEPS)
        return con.table("households").pl()
    finally:
        con.close()


@pytest.mark.benchmark(warmup=False)
@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("n", SIZES)
def test_entitle(benchmark, request, n: int, side: str) -> None:
    inputs = _inputs(request, n)
    benchmark.group = f"validate+entitle|{n}"
    benchmark.extra_info["implementation"] = side
    fn = engine_entitlements if side == "engine" else baseline_entitlements
    households = benchmark.pedantic(_timed("validate+entitle", n, side, fn), args=(inputs,),
                                    rounds=ROUNDS[n], iterations=1)
    assert households.height > 0 and households["entitled_yen"].sum() > 0
    _entitled[(n, side)] = households.select("household_id", "entitled_yen")


@pytest.mark.parametrize("n", SIZES)
def test_entitlements_agree_to_the_yen(request, n: int) -> None:
    inputs = _inputs(request, n)
    engine = _entitled.get((n, "engine"))
    engine = engine if engine is not None else engine_entitlements(inputs).select("household_id", "entitled_yen")
    base = _entitled.get((n, "baseline"))
    base = base if base is not None else baseline_entitlements(inputs).select("household_id", "entitled_yen")
    both = engine.join(base, on="household_id", how="full", coalesce=True, suffix="_baseline")
    assert both.height == engine.height == base.height
    differ = both.filter(pl.col("entitled_yen").ne_missing(pl.col("entitled_yen_baseline")))
    assert differ.is_empty(), differ.head()
    assert engine["entitled_yen"].sum() == base["entitled_yen"].sum()


# ---- points ----------------------------------------------------------------------------------------


def _engine_persons(inputs: Path, run_date: date) -> pl.LazyFrame:
    """persons as nightly.py hands them to the points stage (first night: keys in order of first
    appearance), materialised once outside the timed call."""
    residents = validate.checked_residents(ingest.scan(schemas.RESIDENTS, inputs)[0], run_date)
    valid = residents.filter(pl.col("reject_reason").is_null()).collect().lazy()
    keys = nightly.person_keys(pl.DataFrame(schema={"my_number": pl.Int64, "person_key": pl.Int64}), valid)
    return (valid.join(keys.lazy(), on="my_number", how="left").select("my_number", "person_key", "died_on")
            .unique("my_number", keep="first", maintain_order=True).collect().lazy())


def engine_points(inputs: Path, persons: pl.LazyFrame, run_date: date = RUN_DATE) -> points.PointsNight:
    """nightly._points' computation on a fresh state: checks, holds, grants, the next state."""
    scanned = {c.name: ingest.scan(c, inputs)[0] for c in (schemas.WALLETS, schemas.TRANSACTIONS, schemas.SERVICES)}
    wallets = scanned["wallets"]
    checked = point_checks.checked_transactions(scanned["transactions"], wallets, run_date).collect().lazy()
    holds = point_checks.wallet_holds(wallets, checked, persons, run_date,
                                      min_refund_cycles=CFG.mynapoint.min_refund_cycles,
                                      min_refunded_percent=CFG.mynapoint.min_refunded_percent)
    night = points.points_night(checked, wallets, scanned["services"], persons, points.empty_points_state(),
                                holds, CFG.mynapoint, run_date)
    return night._replace(state=points.PointsState(*pl.collect_all(list(night.state))))


@pytest.mark.benchmark(warmup=False)
@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("n", SIZES)
def test_points(benchmark, request, n: int, side: str) -> None:
    inputs = _inputs(request, n)
    benchmark.group = f"points|{n}"
    benchmark.extra_info["implementation"] = side
    cap = CFG.mynapoint.cap_per_person_yen
    if side == "engine":
        persons = _engine_persons(inputs, RUN_DATE)
        night = benchmark.pedantic(_timed("points", n, side, engine_points), args=(inputs, persons),
                                   rounds=ROUNDS[n], iterations=1)
        granted = night.state.persons["granted_yen"]
        assert 0 < granted.max() <= cap
        _entitled[(n, "engine_points")] = pl.DataFrame({"points_yen": [int(granted.sum())]})
    else:
        con = baseline_sql.connect()
        baseline_sql.run_steps(con, inputs, RUN_DATE, ("residents",))

        def baseline_points():
            return baseline_sql.points(con, inputs, RUN_DATE).aggregate(
                "my_number, sum(points_yen) AS points_yen").pl()

        per_person = benchmark.pedantic(_timed("points", n, side, baseline_points), rounds=ROUNDS[n],
                                        iterations=1)
        con.close()
        assert 0 < per_person["points_yen"].max() <= cap
        engine_total = _entitled.get((n, "engine_points"))
        if engine_total is not None:  # refunds and holds only ever lower the engine's grants
            assert engine_total["points_yen"][0] <= per_person["points_yen"].sum()


# ---- the whole night -------------------------------------------------------------------------------


def _fresh_dirs():
    """A new temp folder per round: the night starts from an empty state every time."""
    return (Path(tempfile.mkdtemp(prefix="kyufu-baseline-night-")),), {}


def engine_night(inputs: Path, folder: Path) -> nightly.RunReport:
    """nightly.run on a fresh state and output folder (removed afterwards)."""
    try:
        return nightly.run(inputs, folder / "state", folder / "out", RUN_DATE, CFG)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.benchmark(warmup=False)
@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("n", SIZES)
def test_night(benchmark, request, n: int, side: str) -> None:
    inputs = _inputs(request, n)
    benchmark.group = f"night|{n}"
    benchmark.extra_info["implementation"] = side
    if side == "engine":
        night = _timed("night", n, side, lambda folder: engine_night(inputs, folder))
        report = benchmark.pedantic(night, setup=_fresh_dirs,
                                    rounds=ROUNDS[n], iterations=1)
        assert report.totals["entitled_yen"] > 0
    else:
        def baseline_night():
            result, con = baseline_sql.run(inputs, RUN_DATE)
            con.close()
            return result

        result = benchmark.pedantic(_timed("night", n, side, baseline_night), rounds=ROUNDS[n], iterations=1)
        assert result.totals["entitled_yen"] > 0
