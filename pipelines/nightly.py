"""The nightly settlement run: registry, accounts and applications in; Zengin transfer files,
ledger, analyst database and run record out; the state folder carried to the next night.

A night is identified by its date and its inputs (a fingerprint of every input file's checksum,
the config and the date):
- a new date runs from the state's head: it pays only what became payable, never a household
  paid before, and re-issues payments from files that were produced but not marked sent;
- the same date with the same inputs is a re-run: it is computed from the state as it was
  before that night, reproduces the same outputs byte for byte and changes nothing;
- the same date with other inputs is refused unless the operator asks for a correction run,
  which pays only the difference and records why.

Stages materialise at checkpoints (Parquet in the run's staging folder). Outputs are written to
the staging folder; once the night reconciles, the state's new version is committed (one atomic
rename) and the outputs are published (one rename). A run killed at any moment leaves the state
as it was and no partial output, and can simply be run again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from engine import (checks, diskspace, entitle, ingest, kana, ledger, outputs, payout, prefetch, reference, schemas,
                    standing, state, validate)
from engine.config import RunConfig, config_as_dict
from engine.errors import ConfigError, DiskFullError, InputError, ReconciliationError, StateError, is_disk_full
from engine.ingest import ROW
from pipelines import night_steps as steps

STAGES = ("ingest", "validate", "persons", "entitle", "payees", "checks", "standing", "points", "outputs",
          "publish")
MYNAPOINT_INPUTS = ("services", "wallets", "transactions")


@dataclass
class RunReport:
    """What the night did: counts per stage, yen totals, outputs; also the run record."""

    run_date: date
    run_dir: Path
    mode: str = "night"
    fingerprint: str = ""
    state_version: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    holds_by_reason: dict[str, int] = field(default_factory=dict)
    not_eligible_by_reason: dict[str, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    files: list[outputs.TransferFile] = field(default_factory=list)
    transfer_date: date | None = None
    unchanged: bool = False  # a re-run that found its published outputs identical
    shards: int = 0  # 0: the night ran in one piece


class _Stages:
    """Times each stage and tells the progress display (a callable taking the stage name)."""

    def __init__(self, report: RunReport, on_stage: Callable[[str], None] | None) -> None:
        self.report, self.on_stage, self.current, self.started = report, on_stage, None, 0.0

    def start(self, name: str) -> None:
        self.stop()
        self.current, self.started = name, time.perf_counter()
        if self.on_stage:
            self.on_stage(name)
        _crash_point(name)

    def stop(self) -> None:
        if self.current:
            seconds = self.report.stage_seconds.get(self.current, 0.0) + time.perf_counter() - self.started
            self.report.stage_seconds[self.current] = round(seconds, 3)
            self.current = None


def _crash_point(name: str) -> None:
    """Test hook: KYUFU_CRASH_AT=<stage> kills the process with SIGKILL when the stage starts,
    so that the crash tests can kill a real run at a known point."""
    if os.environ.get("KYUFU_CRASH_AT") == name:
        os.kill(os.getpid(), 9)


def person_keys(known: pl.DataFrame, residents: pl.LazyFrame) -> pl.DataFrame:
    """The surrogate key of every My Number on the register: kept in the state, new numbers get
    the next keys in order of first appearance in the register. Keys are counters, with no
    derivation from the My Number (research §3.4)."""
    seen = residents.group_by("my_number").agg(pl.col(ROW).min()).sort(ROW).collect()
    new = seen.join(known, on="my_number", how="anti")
    start = int(known["person_key"].max() or 0) + 1 if known.height else 1
    new = new.select("my_number", person_key=pl.int_range(start, start + new.height, dtype=pl.Int64))
    return pl.concat([known, new])


def plan_inputs(inputs_dir: Path) -> dict[str, tuple[pl.LazyFrame, ingest.Source]]:
    """Scan every input (metadata only) and check its contract; every problem raised at once."""
    if not inputs_dir.is_dir():
        msg = f"inputs folder not found: {inputs_dir}\n\nHint: make one with `kyufu generate`."
        raise InputError(msg)
    scanned, problems = {}, []
    for contract in schemas.INPUTS:
        try:
            found = ingest.scan(contract, inputs_dir)
        except InputError as exc:
            problems.append(str(exc))
            continue
        if found is not None:
            scanned[contract.name] = found
    if problems:
        raise InputError("\n\n".join(problems))
    return scanned


def fingerprint(input_record: dict, cfg: RunConfig, run_date: date) -> str:
    """What identifies a night: the date, the config, and every input file's name and checksum
    (names relative to the inputs folder, so moving the folder changes nothing)."""
    files = sorted(
        (name, Path(f["path"]).name, f["sha256"]) for name, entry in input_record.items() for f in entry["files"]
    )
    payload = json.dumps({"run_date": run_date.isoformat(), "config": config_as_dict(cfg), "inputs": files},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class _Plan:
    mode: str  # night / rerun / correction
    base: state.Version  # the state the night is computed from
    folder: str  # the night's output folder name under OUT
    reason: str = ""


def _plan(store: state.Store, run_date: date, fp: Callable[[], str], correction: str | None) -> _Plan:
    """Decide what kind of run this is, from the state's run history. The inputs' fingerprint
    `fp()` is asked for only when a night of that date ran already: a re-run has its inputs."""
    head = store.head()
    runs = head.table("runs")
    same = runs.filter(pl.col("run_date") == run_date)
    nights = same.filter(pl.col("mode") == "night")
    later = runs.filter(pl.col("run_date") > run_date)
    if correction is not None:
        if nights.is_empty():
            msg = f"there is no night {run_date} to correct\n\nHint: run the night without --correction."
            raise StateError(msg)
        if not correction.strip():
            msg = "--correction needs a reason, recorded with the run"
            raise StateError(msg)
        k = same.filter(pl.col("mode") == "correction").height + 1
        return _Plan("correction", head, f"{run_date.isoformat()}-correction-{k}", correction.strip())
    if not nights.is_empty():
        night = nights.row(0, named=True)
        fp_now = fp()
        if night["fingerprint"] == fp_now:
            base = store.version(store.version(night["version"]).info.get("parent") or 0)
            return _Plan("rerun", base, run_date.isoformat())
        msg = (
            f"night {run_date} already ran with other inputs or config; nothing was done\n"
            f"  then: {night['fingerprint'][:16]}…  now: {fp_now[:16]}…\n\n"
            "Hint: to pay only the difference, run it again with --correction 'why'; the reason is recorded."
        )
        raise StateError(msg)
    if not later.is_empty():
        latest = later["run_date"].max()
        msg = (f"night {run_date} comes before the latest night {latest}; nights run in date order\n\n"
               "Hint: to change what an earlier night decided, use a correction run on the latest night.")
        raise StateError(msg)
    return _Plan("night", head, run_date.isoformat())


class _Recorded:
    """The night's input record (every input file's size and checksum) and its fingerprint,
    set in the report once the checksums read in the background (ingest.Checksums) are in."""

    def __init__(self, checksums: ingest.Checksums, cfg: RunConfig, run_date: date, report: RunReport) -> None:
        self._checksums, self._cfg, self._run_date, self._report = checksums, cfg, run_date, report
        self._record: dict | None = None

    def __call__(self) -> dict:
        if self._record is None:
            self._record = self._checksums.record()
            self._report.fingerprint = fingerprint(self._record, self._cfg, self._run_date)
        return self._record

    def fingerprint(self) -> str:
        self()
        return self._report.fingerprint


def run(
    inputs_dir: Path,
    state_dir: Path,
    out_dir: Path,
    run_date: date,
    cfg: RunConfig,
    *,
    correction: str | None = None,
    on_stage: Callable[[str], None] | None = None,
    shards: int | None = None,
    work_dir: Path | None = None,
    check_disk: bool = True,
) -> RunReport:
    """Run one night for `run_date` and publish OUT/<folder>/ atomically (see the module doc).
    With `check_disk`, a night whose estimated writes exceed the free space of a disk is refused
    before it starts (engine/diskspace.py)."""
    if run_date < cfg.benefit.basis_date:
        msg = f"run date {run_date} is before the basis date {cfg.benefit.basis_date}"
        raise ConfigError(msg)
    store = state.Store(state_dir)
    store.clean()
    report = RunReport(run_date=run_date, run_dir=out_dir / run_date.isoformat())
    stages = _Stages(report, on_stage)
    created_out_dir = not out_dir.exists()
    checksums: ingest.Checksums | None = None
    digests = outputs.Digests()  # the analyst tables' digests for the record, hashed as they are written
    ahead = prefetch.ReadAhead()  # a sharded night's next shard read into memory (engine/prefetch.py)
    staging = out_dir / f".{run_date.isoformat()}.partial-{os.getpid()}"
    # the checkpoints (the night's spill): under the staging folder, or where the operator says
    work = (work_dir / f".kyufu-{run_date.isoformat()}-{os.getpid()}") if work_dir else staging / "_checkpoints"
    try:
        _clean_staging(out_dir)
        if work_dir:
            _clean_spill(work_dir)
        stages.start("ingest")
        scanned = plan_inputs(inputs_dir)
        # read and hashed while the night runs; waited for at once only by a night that ran already
        checksums = ingest.Checksums({name: source for name, (_, source) in scanned.items()})
        recorded = _Recorded(checksums, cfg, run_date, report)
        plan = _plan(store, run_date, recorded.fingerprint, correction)
        report.mode, report.run_dir = plan.mode, out_dir / plan.folder
        head = store.head()
        n = report.shards = _shards(head, scanned, shards)
        if check_disk:
            diskspace.check_free_space(
                sum(path.stat().st_size for _, source in scanned.values() for path in source.files),
                {"checkpoints": work_dir or out_dir, "outputs": out_dir, "state": state_dir}, sharded=n > 0)
        written: dict[str, Path] = {}
        if n:
            from pipelines import sharded

            tables, written = sharded.compute(scanned, recorded, plan, staging, work, run_date, cfg, report,
                                              stages, n, store, digests, ahead)
        else:
            tables = _compute(scanned, recorded, plan, staging, work, run_date, cfg, report, stages)
        stages.start("publish")
        shutil.rmtree(work)
        if plan.mode == "rerun":
            _republish(staging, report, store.head().table("files"), plan.folder)
            report.state_version = head.number
            if n and not (report.run_dir / "analyst.duckdb").exists():  # killed before it was written
                outputs.write_duckdb_views(report.run_dir)
        else:
            version = store.commit(head, tables, {
                "kind": plan.mode, "run_date": run_date.isoformat(), "fingerprint": report.fingerprint,
                "reason": plan.reason, "folder": plan.folder, "shards": n,
            }, written)
            report.state_version = version.number
            _crash_point("after-commit")
            _publish(staging, report.run_dir)
            if n:
                outputs.write_duckdb_views(report.run_dir)
        stages.stop()
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        raise DiskFullError.during(stages.current, {"outputs": out_dir, "checkpoints": work_dir or out_dir,
                                                    "state": state_dir}) from None
    finally:
        if checksums is not None:
            checksums.stop()
        digests.stop()
        ahead.stop()
        for folder in (staging, work):
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(store.versions / f".pending-{os.getpid()}", ignore_errors=True)
        if created_out_dir and out_dir.exists() and not any(out_dir.iterdir()):
            out_dir.rmdir()
    return report


def _shards(head: state.Version, scanned: dict, requested: int | None) -> int:
    """How many shards tonight runs in: the state's count once it has one (households never
    change shard); else the operator's, or by the size of the register."""
    from pipelines import sharded

    if head.number and head.table("runs").height:
        kept = head.shards
        if requested is not None and requested != kept:
            msg = (f"the state {head.path.parent.parent} is kept in {kept or 'no'} shards; this night asked for "
                   f"{requested}\n\nHint: leave --shards out: a state's shard count is fixed by its first night.")
            raise StateError(msg)
        return kept
    if requested is not None:
        return requested
    residents = scanned["residents"][0].select(pl.len()).collect().item()
    return sharded.shards_for(residents)


def _clean_spill(work_dir: Path) -> None:
    """Remove checkpoint folders left in the work folder by killed runs (their process is gone)."""
    for path in work_dir.glob(".kyufu-*-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_staging(out_dir: Path) -> None:
    """Remove staging folders left by killed runs."""
    if out_dir.exists():
        for path in out_dir.glob(".*.partial-*"):
            shutil.rmtree(path, ignore_errors=True)
        for path in out_dir.glob(".*.old-*"):
            shutil.rmtree(path, ignore_errors=True)


def _publish(staging: Path, final_dir: Path) -> None:
    """Replace OUT/<folder>/ by the staged folder with renames (each atomic on one filesystem)."""
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old-{os.getpid()}")
        final_dir.rename(old)
        staging.rename(final_dir)
        shutil.rmtree(old)
    else:
        staging.rename(final_dir)


def _republish(staging: Path, report: RunReport, files: pl.DataFrame, folder: str) -> None:
    """A re-run: keep the published night if it is identical; publish it again if it is missing
    or damaged, unless one of its transfer files was sent (a sent file is never produced again)."""
    final_dir = report.run_dir
    deterministic = [p.relative_to(staging) for p in sorted(staging.rglob("*"))
                     if p.is_file() and p.name not in ("analyst.duckdb", "timings.json")]
    if final_dir.exists() and all(
        (final_dir / rel).exists() and (final_dir / rel).read_bytes() == (staging / rel).read_bytes()
        for rel in deterministic
    ):
        report.unchanged = True
        return
    sent = files.filter((pl.col("status") == "sent") & pl.col("transfer_file").str.starts_with(f"{folder}/"))
    if sent.height:
        msg = (f"night {report.run_date} was run again with the same inputs, its published outputs are "
               f"missing or differ, and {sent.height} of its transfer files were sent: they are not "
               "produced again; nothing was done\n\nHint: restore the night's folder from the backup.")
        raise StateError(msg)
    _publish(staging, final_dir)


@dataclass
class Validated:
    """The night's inputs with `reject_reason` per row (checkpoints), the rejects and their
    summary, row counts and pending counts."""

    residents: pl.LazyFrame
    accounts: pl.LazyFrame
    applications: pl.LazyFrame
    rejected: pl.LazyFrame
    rejects_path: Path
    summary: pl.DataFrame
    rows: dict[str, int]
    pending: dict[str, int]

    @property
    def valid_residents(self) -> pl.LazyFrame:
        return self.residents.filter(pl.col("reject_reason").is_null())

    @property
    def usable_accounts(self) -> pl.LazyFrame:
        return self.accounts.filter(pl.col("reject_reason").is_null() & ~pl.col("is_pending"))

    @property
    def usable_applications(self) -> pl.LazyFrame:
        return self.applications.filter(pl.col("reject_reason").is_null() & ~pl.col("is_pending"))


def validated(scanned, work: Path, run_date: date, prechecked: bool = False) -> Validated:
    """Validate: reject_reason per row of residents, accounts and applications, checkpointed.
    `prechecked`: the three arrive validated already (a sharded night checks them as it routes
    them: routing.route_inputs) and are read as they are."""
    def checked(name: str, rules: Callable[[pl.LazyFrame], pl.LazyFrame]) -> pl.LazyFrame:
        if prechecked:
            return scanned[name][0]
        return steps.sink(lambda: rules(scanned[name][0]), work / "01_validate" / f"{name}.parquet", name)

    residents = checked("residents", lambda lf: validate.checked_residents(lf, run_date))
    accounts = checked("accounts", lambda lf: validate.checked_accounts(lf, run_date))
    household_ids = residents.filter(pl.col("reject_reason").is_null()).select("household_id")
    applications = checked("applications", lambda lf: validate.checked_applications(lf, household_ids, run_date))
    # a sharded night routes a copy of an account to each shard of its person: counted once
    counted = accounts.filter(~pl.col("__copy")) if "__copy" in accounts.collect_schema() else accounts
    rejects_path = work / "02_tables" / "rejects.parquet"
    rejected = steps.sink(
        pl.concat(
            [
                validate.rejects(residents, "residents", ["household_id"]),
                validate.rejects(counted, "accounts", []),
                validate.rejects(applications, "applications", ["household_id", "application_id"]),
            ],
            how="diagonal_relaxed",
        ).select("dataset", ROW, "reason", "detail", "household_id", "application_id"),
        rejects_path,
    )
    rows = {
        name: frame.select(pl.len()).collect().item()
        for name, frame in (("residents", residents), ("accounts", counted), ("applications", applications))
    }
    pending = {
        name: frame.filter(pl.col("is_pending") & pl.col("reject_reason").is_null()).select(pl.len()).collect().item()
        for name, frame in (("accounts", counted), ("applications", applications))
    }
    return Validated(residents, accounts, applications, rejected, rejects_path, validate.reject_summary(rejected),
                     rows, pending)


def note_validation(report: RunReport, rows: dict[str, int], summary: pl.DataFrame, pending: dict[str, int]) -> None:
    report.rejects_by_reason.update({
        f"{d}.{r}": int(n) for d, r, n in summary.select("dataset", "reason", "rows").iter_rows()
    })
    for name, n in rows.items():
        report.counts[f"{name}_rows"] = n
        report.counts[f"{name}_rejected"] = int(summary.filter(pl.col("dataset") == name)["rows"].sum())
    for name, n in pending.items():
        report.counts[f"{name}_pending"] = n


def entitled(v: Validated, keys: pl.LazyFrame, paid_elsewhere: pl.LazyFrame, cfg: RunConfig,
             work: Path) -> tuple[pl.LazyFrame, pl.LazyFrame, pl.LazyFrame]:
    """Entitle: members (eligibility, counted), households (yen), payees; checkpointed.

    `keys`: (my_number, person_key), joined to the valid residents; or, from a sharded night's
    person-key pass, (ROW, person_key) of each valid resident in row order, set beside them
    (keyed_residents)."""
    if "my_number" in keys.collect_schema():
        residents = v.valid_residents.join(keys, on="my_number", how="left", maintain_order="left")
    else:
        residents = keyed_residents(v.valid_residents, keys)
    annotated = entitle.eligible_members(
        residents,
        entitle.declined_members(v.usable_applications),
        cfg.benefit,
    ).pipe(entitle.without_paid_elsewhere, paid_elsewhere)
    # the checkpoint holds what entitle adds, row by row in the valid residents' order, set
    # beside them when read: the residents' own columns (the names, the widest) are not encoded
    # again (the sink: 1.0-1.2 CPU-s against 3.0-3.9 on a 3.3M-resident shard, benchmarks/RESULTS.md)
    names, own = annotated.collect_schema().names(), v.valid_residents.collect_schema()
    added = steps.sink(annotated.select(c for c in names if c not in own), work / "03_entitle" / "members.parquet")
    members = pl.concat([v.valid_residents, added], how="horizontal").select(names)
    # households and payees from one pass over the members, into one checkpoint
    both = steps.sink(entitle.households_with_payees(members, cfg.benefit), work / "03_entitle" / "households.parquet")
    households = both.drop(entitle.PAYEE_COLUMNS)
    payees = entitle.payees_of(both)
    return members, households, payees


def keyed_residents(residents: pl.LazyFrame, keys: pl.LazyFrame) -> pl.LazyFrame:
    """`residents` with the person_key of `keys` (ROW, person_key: one row per resident, in the
    same order) set beside each row: no join. The rows are checked to be the same, in the same
    order, before they are trusted (a check of two integer columns)."""
    pair = pl.concat([residents.select(ROW), keys.select(pl.col(ROW).alias("__key_row"))], how="horizontal")
    try:
        mismatched = pair.filter(pl.col(ROW).ne_missing(pl.col("__key_row"))).select(pl.len()).collect().item()
        differ = f"{mismatched} rows differ" if mismatched else None
    except pl.exceptions.ShapeError:
        differ = "their row counts differ"
    if differ:
        msg = f"the person keys do not line up with the valid residents ({differ}); nothing was published"
        raise ReconciliationError(msg)
    return pl.concat([residents, keys.select("person_key")], how="horizontal")


@dataclass
class Settled:
    """What the standing stage decided and the state tables it leaves."""

    decided: pl.DataFrame
    in_files: pl.DataFrame
    lines: pl.DataFrame
    ledger_after: pl.DataFrame
    figures: dict[str, int]
    tables: dict[str, pl.DataFrame]


def settled(base, folder: str, mode: str, households: pl.LazyFrame, checked: pl.DataFrame,
            members: pl.LazyFrame, decisions: pl.DataFrame, staging: Path, run_date: date, cfg: RunConfig,
            report: RunReport) -> Settled:
    """Standing: status against earlier nights (the state `base`), payments, transfer files
    (written into `staging`), ledger lines, reconciliation; and the state tables after."""
    transfer_date = reference.next_bank_business_day(run_date)
    report.transfer_date = transfer_date
    tonight = households.collect().join(
        checked.drop([c for c in checked.columns
                      if c in households.collect_schema().names() and c != "household_id"]),
        on="household_id", how="left",
    )
    decided = standing.standing(tonight, base.table("positions"), decisions, correction=mode == "correction")
    new_payments = decided.filter(pl.col("pay_tonight_yen") > 0).select(
        "household_id", pl.col("pay_tonight_yen").alias("amount_yen"), "payee_person_key", "municipality_code",
        *payout.ACCOUNT_KEY, kana.zengin_name_expr(pl.col("holder_name_kana")).alias("payee_name_kana"),
        pl.lit(run_date).alias("paid_on"),
        pl.when(pl.col("paid_before_yen") > 0).then(pl.lit("correction")).otherwise(pl.lit("first")).alias("kind"),
    )
    reissued = standing.reissued_payments(base.table("payments"), base.table("files")).drop("transfer_file")
    in_files = steps.with_transfer_files(
        pl.concat([new_payments, reissued.with_columns(kind=pl.lit("reissue"))], how="vertical_relaxed"),
        transfer_date, cfg.zengin.max_records_per_file,
    )
    written = outputs.write_transfer_files(in_files, staging, transfer_date, cfg.zengin)
    report.files.extend(written)
    key = pl.lit(f"{folder}/") + pl.col("transfer_file")
    payments_after = pl.concat(
        [
            base.table("payments").join(reissued.select("household_id", "paid_on"),
                                        on=["household_id", "paid_on"], how="anti"),
            in_files.with_columns(key.alias("transfer_file")).select(state.SCHEMAS["payments"].names()),
        ],
        how="vertical_relaxed",
    ).sort("household_id", "paid_on")
    files_tonight = pl.DataFrame(
        [{"transfer_file": f"{folder}/{f.path.relative_to(staging)}", "produced_on": run_date,
          "transfer_date": transfer_date, "municipality_code": f.municipality_code, "records": f.records,
          "total_yen": f.total_yen, "sha256": f.sha256, "status": "produced", "sent_on": None,
          "sent_by": None, "superseded_by_run": None} for f in written],
        schema=state.SCHEMAS["files"],
    )
    files_after = standing.files_after(base.table("files"), files_tonight, run_date)
    positions_after = standing.positions_after(decided, run_date)
    references = pl.concat([  # what each household's journal lines point at: its file, or its hold
        in_files.filter(pl.col("kind") != "reissue").select("household_id", key.alias("reference")),
        decided.filter(pl.col("status").is_in(["held", "denied"]))
        .select("household_id", pl.col("hold_id").alias("reference")),
    ]).unique("household_id", keep="first")
    lines = ledger.ledger_lines(base.table("positions"), positions_after, run_date, references)
    ledger_after = pl.concat([base.table("ledger"), lines], how="vertical_relaxed")
    paid_persons_after = pl.concat([
        base.table("paid_persons"),
        members.filter(pl.col("is_counted")).select("person_key", "household_id").collect()
        .join(new_payments.select("household_id", "paid_on"), on="household_id")
        .join(base.table("paid_persons"), on=["person_key", "household_id"], how="anti"),
    ], how="vertical_relaxed")
    holds_after = standing.holds_after(base.table("holds"), decided, run_date)

    figures = steps.reconcile(decided, base.table("positions"), lines, ledger_after, files_after, written,
                              new_payments, reissued)
    steps.count(report, decided, members)
    return Settled(decided, in_files, lines, ledger_after, figures, {
        "positions": positions_after, "payments": payments_after, "paid_persons": paid_persons_after,
        "files": files_after, "holds": holds_after,
    })


def _compute(scanned, recorded: Callable[[], dict], plan: _Plan, staging: Path, work: Path, run_date: date,
             cfg: RunConfig, report: RunReport, stages: _Stages) -> dict[str, pl.DataFrame]:
    """The night itself: writes the outputs into `staging` and its checkpoints into `work`;
    returns the state's new tables. `recorded()`: the input record (_Recorded)."""
    base = plan.base
    work.mkdir(parents=True)

    stages.start("validate")
    v = validated(scanned, work, run_date)
    paths = {name: str(source.path) for name, (_, source) in scanned.items()}
    validate.enforce_reject_ratio(v.rows, paths, v.summary, cfg.validate_.max_reject_ratio)
    note_validation(report, v.rows, v.summary, v.pending)

    # ---- persons: surrogate keys from the state ----------------------------------------------
    stages.start("persons")
    keys = person_keys(base.table("persons"), v.valid_residents)
    decisions = steps.decisions(base.table("decisions"), scanned, run_date)

    stages.start("entitle")
    members, households, payees = entitled(v, keys.lazy(), base.scan("paid_persons"), cfg, work)

    # ---- payees: the account each household is paid into -------------------------------------
    stages.start("payees")
    resolved = payout.resolved_accounts(households, payees, v.usable_accounts, v.usable_applications).collect()

    stages.start("checks")
    checked, compared_pairs = checks.with_holds(resolved, members, cfg.checks)
    report.counts["identity_pairs_compared"] = compared_pairs

    # ---- standing: status against earlier nights, payments, files, ledger ---------------------
    stages.start("standing")
    s = settled(base, plan.folder, plan.mode, households, checked, members, decisions, staging, run_date, cfg,
                report)
    figures, ledger_after, rejects_path = s.figures, s.ledger_after, v.rejects_path

    # ---- points: Mynapoint grants and clawbacks under the cumulative cap ----------------------
    point_tables: dict[str, pl.DataFrame] = {}
    mynapoint: dict = {"analyst": {}, "files": []}
    if all(name in scanned for name in MYNAPOINT_INPUTS):
        stages.start("points")
        persons = v.valid_residents.join(keys.lazy(), on="my_number", how="left").select(
            "my_number", "person_key", "died_on").unique("my_number", keep="first", maintain_order=True)
        mynapoint = steps.mynapoint_night(scanned, persons, base, decisions, plan, staging, run_date, cfg,
                                          report)
        point_tables = mynapoint["state"]
        ledger_after = pl.concat([ledger_after, mynapoint["ledger"]], how="vertical_relaxed")
        figures.update(mynapoint["figures"])
        rejects_path = work / "02_tables" / "rejects_all.parquet"
        steps.sink(pl.concat([v.rejected, mynapoint["rejects"].lazy()], how="diagonal_relaxed"), rejects_path)
    report.totals = figures

    # ---- outputs: database, run record -------------------------------------------------------
    stages.start("outputs")
    input_record = recorded()  # the run history and the record name the inputs' checksums
    runs_after = steps.runs_after(base.table("runs"), report, plan, base)
    tables = steps.analyst_tables(
        work, run_date, decided=s.decided, in_files=s.in_files, members=members, rejects_path=rejects_path,
        holds=s.tables["holds"], ledger_all=ledger_after, runs=runs_after, files=s.tables["files"],
        decisions=decisions, points_outputs=mynapoint["analyst"],
    )
    outputs.write_duckdb(staging / "analyst.duckdb", tables)
    write_record(staging, report, plan, base, input_record, cfg, tables, mynapoint["files"])
    stages.stop()
    outputs.write_run_record(staging / "timings.json", {"stage_seconds": report.stage_seconds})
    return {
        "persons": keys, **s.tables, "decisions": decisions, "ledger": ledger_after, "runs": runs_after,
        **point_tables,
    }


def write_record(staging: Path, report: RunReport, plan: _Plan, base, input_record: dict, cfg: RunConfig,
                 tables: dict[str, Path | list[Path]], settlement_files: list, extra: dict | None = None,
                 digests: outputs.Digests | None = None) -> None:
    """run.json: what the night read, decided and wrote, with checksums (of the analyst tables
    from `digests` where it hashed them already)."""
    sha256_of = digests.of if digests is not None else outputs.sha256_of
    record = {
        "run_date": report.run_date.isoformat(),
        "mode": "night" if plan.mode == "rerun" else plan.mode,  # a re-run reproduces its night
        "reason": plan.reason or None,
        "fingerprint": report.fingerprint,
        "transfer_date": report.transfer_date.isoformat() if report.transfer_date else None,
        "state": {"computed_from_version": base.number, "commits_version": base.number + 1},
        "engine": {"polars": pl.__version__, "bank_master": reference.bank_version()},
        "inputs": {name: {"path": entry["path"], "files": [
            {**f, "path": str(Path(f["path"]).relative_to(Path(entry["path"]).parent))} for f in entry["files"]]}
            for name, entry in input_record.items()},
        "config": config_as_dict(cfg),
        **(extra or {}),
        "counts": report.counts,
        "rejects_by_reason": report.rejects_by_reason,
        "not_eligible_by_reason": report.not_eligible_by_reason,
        "holds_by_reason": report.holds_by_reason,
        "totals_yen": report.totals,
        "outputs": {
            "analyst_database": {
                "path": "analyst.duckdb",
                "tables": {name: {"rows": pl.scan_parquet(path).select(pl.len()).collect().item(),
                                  "sha256": sha256_of(path)} for name, path in tables.items()},
            },
            "transfer_files": [
                {"path": str(f.path.relative_to(staging)), "municipality_code": f.municipality_code,
                 "transfer_date": f.transfer_date.isoformat(), "records": f.records,
                 "total_yen": f.total_yen, "sha256": f.sha256}
                for f in report.files
            ],
            "settlement_files": [
                {"path": str(f.path.relative_to(staging)), "service_id": f.service_id, "records": f.records,
                 "total_yen": f.total_yen, "sha256": f.sha256}
                for f in settlement_files
            ],
        },
    }
    outputs.write_run_record(staging / "run.json", record)
