"""The national night: the night of pipelines/nightly.py, run shard by shard so that memory is
bounded by the size of a shard, not of the nation.

Households are sharded by municipality (each municipality's shard is fixed the first night and
kept in the state's `shard_map`), so that every transfer file (one per municipality) is written
by one shard and a household never changes shard (a household is registered in one
municipality: moving out ends the record, research §1). Persons' Mynapoint is sharded by
person_key (a counter kept forever), so a person's cap lives in one shard.

    route inputs      residents by household → shard of its municipality; accounts by My Number
                      (the shard of the person's first registration); applications by household
                      (all copies of one application_id together: the duplicate rule is global);
                      each row checked by validate's rules in the same streaming pass
    per shard         validate                      → reject counts, examples, rejects
    whole nation      reject ratio; person keys     (My Number → person_key, one pass)
                      route wallets and transactions by the owner's person_key; the state's
                      paid persons to every shard where the person is registered tonight
    per shard         entitle, payees               → narrow projections for the global checks
    whole nation      double registrations, fuzzy identity (by birth-date bucket: every block
                      shares a birth date), shared accounts   → holds across households
    per shard         checks, standing, transfer files, ledger, Mynapoint → state parts, analyst parts
    whole nation      settlement files (one per provider), files table, run history,
                      reconciliation of the sums, analyst database, run record; one commit

The state keeps each household-keyed table as one part per shard (engine/state.py); the
commit is still the one atomic replacement of CURRENT, so a killed national night leaves the
state as it was. Peak memory is the largest of: one shard's night (~1.5 GB per million
residents), the global passes (a few sorted NumPy columns of the nation, 8 bytes per resident
each) and one birth-date bucket of the fuzzy identity check.

Where a sharded night can differ from the night in one piece (tests/pipelines/test_sharded.py
finds them equal on generated nights): a wallet registered by two people goes with its first
owner, so the second owner's other wallets do not see it; a household whose register rows name
municipalities of different shards stops the night with an error naming them (a household is
registered in one municipality).

The validation rules that compare rows (copies of a key, a person's latest account link, an
application's household) find every row they compare in one shard, so checking the rows as
they are routed decides what checking each shard would (tests/pipelines/test_routing.py),
without writing each input a second time. The transactions are still checked per shard
(routing.route_points says why).

Scratch is removed as soon as nothing reads it: the person keys and paid persons once
entitled, the projections of the checks across households once they ran, and each shard's
checked inputs, checkpoints, routed wallets and transactions once the shard is done (its
analyst parts stay until the publish). The national night's disk peak is then the checked
inputs and the entitle checkpoints of every shard at once (benchmarks/RESULTS.md, Disk).

The routing and the passes over the whole nation that decide it: pipelines/routing.py.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from engine import checks, identity, ledger, outputs, payout, prefetch, settlement, sorted_index, state, validate
from engine.config import RunConfig
from engine.errors import ReconciliationError
from pipelines import night_steps as steps
from pipelines import nightly, routing

# a national shard (4.8M residents) peaked at 9.5 GB in runs 23 and 24 (its points stage; benchmarks/RESULTS.md)
RESIDENTS_PER_SHARD = 5_000_000
# a shard's memory per resident, sized within half the available memory (shards_for): the measured
# peak, ~2,000 bytes per resident, then takes at most two thirds of it
BYTES_PER_RESIDENT = 1_500
BIRTH_BUCKETS = 16  # fuzzy identity runs one birth-date bucket at a time


def shards_for(residents: int, per_shard: int = RESIDENTS_PER_SHARD, available: int | None = None) -> int:
    """How many shards a night of `residents` rows needs (0: one piece, the plain night): one per
    `per_shard` residents, fewer residents per shard when the machine has less memory than a
    shard's night needs (1.5 GB per million residents within half the available memory; the
    measured peak, ~2 GB per million, then fits in two thirds of it)."""
    available = _available_memory() if available is None else available
    fits = int(available / 2 / BYTES_PER_RESIDENT)
    per_shard = max(100_000, min(per_shard, fits))
    return 0 if residents <= per_shard else math.ceil(residents / per_shard)


def _available_memory() -> int:
    """MemAvailable of /proc/meminfo (bytes); 16 GB when it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 16 * 2**30


def shard_map(residents: pl.LazyFrame, n: int, known: pl.DataFrame) -> pl.DataFrame:
    """municipality_code → shard: the known map, plus tonight's new municipalities, largest
    first, each to the shard with the fewest residents so far (greedy bin packing)."""
    sizes = residents.group_by("municipality_code").len().drop_nulls().collect()
    load = [0] * n
    for shard, rows in sizes.join(known, on="municipality_code").group_by("shard").agg(
            pl.col("len").sum()).iter_rows():
        load[shard] += int(rows)
    new = sizes.join(known, on="municipality_code", how="anti").sort(["len", "municipality_code"],
                                                                      descending=[True, False])
    rows = []
    for code, size in new.iter_rows():
        shard = min(range(n), key=lambda s: (load[s], s))
        load[shard] += int(size)
        rows.append((code, shard))
    added = pl.DataFrame(rows, schema=state.SCHEMAS["shard_map"], orient="row")
    return pl.concat([known, added]).sort("municipality_code")


@dataclass(frozen=True)
class ShardView:
    """The state as one shard sees it: its parts of the sharded tables, the files of its
    municipalities, the global tables whole."""

    version: state.Version
    shard: int
    municipalities: pl.DataFrame  # municipality_code of the shard

    @property
    def number(self) -> int:
        return self.version.number

    @property
    def info(self) -> dict:
        return self.version.info

    def _path(self, name: str) -> Path:
        return self.version.path / f"{state.part_name(name, self.shard)}.parquet"

    def table(self, name: str) -> pl.DataFrame:
        if name in state.SHARDED:
            path = self._path(name)
            return pl.read_parquet(path) if path.exists() else state.SCHEMAS[name].to_frame()
        if name == "files":
            return self.version.table("files").join(self.municipalities, on="municipality_code", how="semi")
        return self.version.table(name)

    def scan(self, name: str) -> pl.LazyFrame:
        if name in state.SHARDED:
            path = self._path(name)
            return pl.scan_parquet(path) if path.exists() else state.SCHEMAS[name].to_frame().lazy()
        return self.table(name).lazy()


BUCKET = "__bucket"


def _bucket() -> pl.Expr:
    return (pl.col("birth_date").cast(pl.Int64) % BIRTH_BUCKETS).alias(BUCKET)


def across_households(work: Path, n: int, cfg: RunConfig, ahead: prefetch.ReadAhead) -> tuple[pl.DataFrame, int]:
    """The checks across households over the whole nation, from each shard's narrow projections
    (read `ahead` in the order the checks read them)."""
    folder = work / "across"
    ahead.read([*(folder / f"{name}.{s}.parquet" for name in ("members", "accounts") for s in range(n)),
                *(folder / f"identity.{s}" / f"{BUCKET}={b}" for b in range(BIRTH_BUCKETS) for s in range(n))])
    members = pl.scan_parquet([folder / f"members.{s}.parquet" for s in range(n)])
    resolved = pl.scan_parquet([folder / f"accounts.{s}.parquet" for s in range(n)]).with_columns(
        payout.account_label().alias("__account"))
    # only the numbers and accounts that occur more than once can be shared: found by sorting
    # one column of the nation, then the checks run on those rows alone
    repeated = pl.Series(sorted_index.repeated(routing.column(members, pl.col("my_number")))).implode()
    shared = pl.Series(sorted_index.repeated(
        routing.column(resolved, pl.col("__account").hash(seed=7)))).implode()
    found = [
        checks.double_registrations(members.filter(pl.col("my_number").is_in(repeated)))
        .select("household_id", "evidence", "reason").collect(),
        checks.shared_accounts(resolved.filter(pl.col("__account").hash(seed=7).is_in(shared)).drop("__account"),
                               cfg.checks).collect(),
    ]
    compared = 0
    for bucket in range(BIRTH_BUCKETS):
        keys = pl.concat([routing.scan(folder / f"identity.{s}" / f"{BUCKET}={bucket}") for s in range(n)])
        fuzzy, pairs = identity.fuzzy_identities_from_keys(keys.collect(), cfg.checks)
        found.append(fuzzy.select("household_id", "evidence", "reason"))
        compared += pairs
    holds = (
        pl.concat(found, how="vertical_relaxed")
        .group_by("household_id", "reason")
        .agg(pl.col("evidence").str.split("; ").explode().unique().sort().str.join("; "))
        .sort("household_id", "reason")
    )
    return holds, compared


def write_across_inputs(members: pl.LazyFrame, resolved: pl.LazyFrame, folder: Path, shard: int) -> None:
    """What the checks across households read of one shard: narrow projections."""
    folder.mkdir(parents=True, exist_ok=True)
    members.filter(pl.col("is_eligible")).select("my_number", "household_id", "person_key", "is_eligible") \
        .sink_parquet(folder / f"members.{shard}.parquet", **steps.CHECKPOINT)
    resolved.select("household_id", "account_source", *payout.ACCOUNT_KEY, "payee_family_normalized") \
        .sink_parquet(folder / f"accounts.{shard}.parquet", **steps.CHECKPOINT)
    # one file per birth-date bucket (the fuzzy identity check reads the nation a bucket at a
    # time); a row without a birth date meets no other (identity.ROW_KEYS)
    routing.write_routed(identity.identity_keys(members).filter(pl.col("birth_date").is_not_null())
                         .with_columns(_bucket()), folder / f"identity.{shard}", BIRTH_BUCKETS, key=BUCKET)


def _routed_inputs(work: Path, k: int) -> list[Path]:
    """Shard k's validated inputs, as the entitle stage reads them."""
    return [work / "validated" / name / f"{routing.SHARD}={k}" for name in routing.ROUTED]


def _scratch(work: Path, k: int) -> list[Path]:
    """What the shard loop reads of shard k (and removes once the shard is done), but its
    analyst parts."""
    shard_work = work / f"shard-{k}"
    folders = ("routed/wallets", "routed/transactions", "points_persons",
               *(f"validated/{name}" for name in routing.ROUTED))
    return [*(path for path in sorted(shard_work.iterdir()) if path.name != "05_tables"),
            *(work / folder / f"{routing.SHARD}={k}" for folder in folders)]


def compute(scanned, recorded, plan, staging: Path, work: Path, run_date: date, cfg: RunConfig, report, stages,
            n: int, store: state.Store, digests: outputs.Digests, ahead: prefetch.ReadAhead,
            ) -> tuple[dict[str, pl.DataFrame], dict[str, Path]]:
    """The national night (module doc): writes the outputs into `staging` and its checkpoints
    into `work`; returns the state's new global tables and its parts, written into the store's
    pending folder. `recorded()`: the input record (nightly._Recorded); `digests` hashes each
    shard's analyst parts for the record as they are written; `ahead` reads the next shard's
    files into memory while a shard computes (engine/prefetch.py)."""
    base = plan.base
    work.mkdir(parents=True)
    pending = store.pending()
    written: dict[str, Path] = {}

    stages.start("route")
    municipalities = shard_map(scanned["residents"][0], n, base.table("shard_map"))
    inputs = routing.route_inputs(scanned, n, municipalities, work, run_date)
    views = [ShardView(base, k, municipalities.filter(pl.col("shard") == k).select("municipality_code"))
             for k in range(n)]
    reports = [nightly.RunReport(run_date=run_date, run_dir=report.run_dir) for _ in range(n)]

    stages.start("validate")
    checked = [nightly.validated(inputs[k], work / f"shard-{k}", run_date, prechecked=True) for k in range(n)]
    rows = {name: sum(v.rows[name] for v in checked) for name in routing.ROUTED}
    pending_rows = {name: sum(v.pending[name] for v in checked) for name in ("accounts", "applications")}
    summary = (
        pl.concat([v.summary for v in checked])
        .group_by("dataset", "reason", maintain_order=True)
        .agg(pl.col("rows").sum(), pl.col("examples").str.join("; "))
        .sort("dataset", "reason")
    )
    paths = {name: str(source.path) for name, (_, source) in scanned.items()}
    validate.enforce_reject_ratio(rows, paths, summary, cfg.validate_.max_reject_ratio)
    nightly.note_validation(report, rows, summary, pending_rows)
    del inputs

    stages.start("persons")
    has_points = all(name in scanned for name in nightly.MYNAPOINT_INPUTS)
    if has_points:  # routed by owner once the person keys are known
        ahead.read([*scanned["wallets"][1].files, *scanned["transactions"][1].files])
    keys, shard_keys, people, everyone = routing.person_keys(
        base.scan("persons"), [v.valid_residents for v in checked], n, work)
    written["persons"] = pending / "persons.parquet"
    keys.write_parquet(written["persons"], **state.PARQUET)
    del keys
    decisions = steps.decisions(base.table("decisions"), scanned, run_date)
    points_inputs = routing.route_points(scanned, everyone, n, work) if has_points else []
    paid = routing.route_paid(base.scan("paid_persons"), everyone, n, work)
    del everyone

    stages.start("entitle")
    entitled = []
    ahead.read(_routed_inputs(work, 0))
    for k in range(n):
        if k + 1 < n:
            ahead.read(_routed_inputs(work, k + 1))
        members, households, payees = nightly.entitled(checked[k], shard_keys[k], paid[k], cfg, work / f"shard-{k}")
        resolved = steps.sink(payout.resolved_accounts(households, payees, checked[k].usable_accounts,
                                                       checked[k].usable_applications),
                              work / f"shard-{k}" / "04_payees" / "resolved.parquet")
        write_across_inputs(members, resolved, work / "across", k)
        entitled.append((members, households, resolved))
    del shard_keys, paid
    _drop(work / "keys", work / "paid_persons")

    stages.start("checks")
    across, compared = across_households(work, n, cfg, ahead)
    report.counts["identity_pairs_compared"] = compared
    _drop(work / "across")

    figures: dict[str, int] = {}
    files_after, settlements, analyst, settlement_totals = [], [], [], []
    ahead.read(_scratch(work, 0))
    for k in range(n):
        if k + 1 < n:
            ahead.read(_scratch(work, k + 1))
        members, households, resolved_lf = entitled[k]
        resolved = resolved_lf.collect()
        stages.start("checks")
        held, _ = checks.with_holds(resolved, members, cfg.checks,
                                    across=across.join(resolved.select("household_id"), on="household_id",
                                                       how="semi"))
        del resolved
        stages.start("standing")
        s = nightly.settled(views[k], plan.folder, plan.mode, households, held, members, decisions, staging,
                            run_date, cfg, reports[k])
        del held
        municipality_codes = {f.municipality_code for f in reports[k].files}
        outside = municipality_codes - set(views[k].municipalities["municipality_code"].to_list())
        if outside:
            msg = (f"shard {k} paid households of municipalities {sorted(outside)[:5]} that belong to other "
                   "shards (their registry rows name several municipalities); nothing was published\n\n"
                   "Hint: a household's rows must name one municipality; fix the registry extract.")
            raise ReconciliationError(msg)
        ledger_after, rejects_path = s.ledger_after, checked[k].rejects_path
        shard_work = work / f"shard-{k}"
        point_outputs: dict = {}
        if has_points:
            stages.start("points")
            scratch = shard_work / "settlement"
            mynapoint = steps.mynapoint_night(points_inputs[k], people[k], views[k], decisions, plan, scratch,
                                              run_date, cfg, reports[k])
            ledger_after = pl.concat([ledger_after, mynapoint["ledger"]], how="vertical_relaxed")
            s.figures.update(mynapoint["figures"])
            rejects_path = shard_work / "02_tables" / "rejects_all.parquet"
            steps.sink(pl.concat([checked[k].rejected, mynapoint["rejects"].lazy()], how="diagonal_relaxed"),
                       rejects_path)
            for name, frame in mynapoint["state"].items():
                written[state.part_name(name, k)] = _write(frame, pending, state.part_name(name, k), name)
            settlements.append(mynapoint["analyst"]["point_settlements"])
            settlement_totals.append(sum(f.total_yen for f in mynapoint["files"]))
            point_outputs = mynapoint["analyst"]
        stages.start("outputs")
        for name in ("positions", "payments", "paid_persons", "holds"):
            written[state.part_name(name, k)] = _write(s.tables[name], pending, state.part_name(name, k), name)
        written[state.part_name("ledger", k)] = _write(ledger_after, pending, state.part_name("ledger", k), "ledger")
        files_after.append(s.tables["files"])
        analyst.append(steps.analyst_tables(
            shard_work, run_date, decided=s.decided, in_files=s.in_files, members=members,
            rejects_path=rejects_path, holds=s.tables["holds"], ledger_all=written[state.part_name("ledger", k)],
            runs=None, files=None, decisions=None, points_outputs=point_outputs,
        ))
        digests.add(analyst[-1].values())
        for name, value in s.figures.items():
            figures[name] = figures.get(name, 0) + value
        del s, ledger_after, point_outputs
        entitled[k] = checked[k] = None
        # the shard is done: all that is read of it again is its analyst parts (05_tables)
        _drop(*_scratch(work, k))

    stages.start("outputs")
    _merge_reports(report, reports)
    ledger.check_balanced(figures)
    settlement_files = []
    if has_points:
        services = scanned["services"][0].collect()
        lines = pl.concat(settlements).sort("service_id", "wallet_id")
        settlement_files = settlement.write_settlement_files(lines, services, staging, run_date)
        if sum(f.total_yen for f in settlement_files) != sum(settlement_totals):
            msg = "settlement files do not add up to the shards' settlement totals"
            raise ReconciliationError(msg)
    report.totals = figures
    files = pl.concat(files_after, how="vertical_relaxed").sort("transfer_file")
    input_record = recorded()  # the run history and the record name the inputs' checksums
    runs_after = steps.runs_after(base.table("runs"), report, plan, base)
    tables = _analyst_tables(work, run_date, analyst, runs_after, files, decisions)
    tables = outputs.place_analyst_parquet(staging, tables, digests)  # analyst.duckdb: views, once published
    nightly.write_record(staging, report, plan, base, input_record, cfg, tables, settlement_files,
                         extra={"shards": n}, digests=digests)
    stages.stop()
    outputs.write_run_record(staging / "timings.json", {"stage_seconds": report.stage_seconds})
    return ({"files": files, "decisions": decisions, "runs": runs_after, "shard_map": municipalities},
            written)


def _drop(*paths: Path) -> None:
    """Remove scratch that nothing reads any more (folders or files; missing ones are fine)."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _write(frame: pl.DataFrame, folder: Path, part: str, name: str) -> Path:
    path = folder / f"{part}.parquet"
    schema = state.SCHEMAS[name]
    frame.select([pl.col(c).cast(t) for c, t in schema.items()]).write_parquet(path, **state.PARQUET)
    return path


def _merge_reports(report, reports) -> None:
    """The nation's counts: each shard's summed (the checks across households counted once)."""
    for part in reports:
        for field in ("counts", "rejects_by_reason", "holds_by_reason", "not_eligible_by_reason"):
            mine, theirs = getattr(report, field), getattr(part, field)
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value
        report.files.extend(part.files)
        report.transfer_date = part.transfer_date
    for field in ("rejects_by_reason", "holds_by_reason", "not_eligible_by_reason"):
        setattr(report, field, dict(sorted(getattr(report, field).items())))
    report.files.sort(key=lambda f: str(f.path))


def _analyst_tables(work: Path, run_date: date, parts: list[dict[str, Path]], runs: pl.DataFrame,
                    files: pl.DataFrame, decisions: pl.DataFrame) -> dict[str, Path | list[Path]]:
    """The analyst tables: each shard's parts, the global tables whole; points_ignored summed."""
    folder = work / "05_tables"
    folder.mkdir(parents=True, exist_ok=True)
    tables: dict[str, Path | list[Path]] = {}
    for name in parts[0]:
        tables[name] = [p[name] for p in parts]
    if "points_ignored" in tables:
        path = folder / "points_ignored.parquet"
        pl.scan_parquet(tables["points_ignored"]).group_by("run_date", "service_id", "reason").agg(
            pl.col("transactions").sum(), pl.col("amount_yen").sum()).sort("service_id", "reason") \
            .sink_parquet(path, **state.PARQUET)
        tables["points_ignored"] = path
    for name, frame in (("runs", runs), ("files", files), ("decisions", decisions)):
        tables[name] = folder / f"{name}.parquet"
        frame.write_parquet(tables[name], **state.PARQUET)
    return {name: tables[name] for name in outputs.ANALYST_TABLES if name in tables}
