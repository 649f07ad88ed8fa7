"""The nightly settlement run: registry, accounts and applications in; Zengin transfer files,
ledger, analyst database and run record out.

Stages materialise at checkpoints (Parquet in the run's staging folder); outputs are written to
the staging folder and published with one rename once the night reconciles, so a failed night
leaves no partial output and the state folder as it was.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import polars as pl

from engine import checks, entitle, ingest, kana, ledger, outputs, payout, reference, schemas, validate
from engine.config import RunConfig, config_as_dict
from engine.errors import ConfigError, InputError, StateError
from engine.ingest import ROW

STAGES = ("ingest", "validate", "persons", "entitle", "payees", "checks", "outcomes", "outputs",
          "publish")
PERSONS_STATE = "persons.parquet"
RUNS_STATE = "runs.parquet"


@dataclass
class RunReport:
    """What the night did: counts per stage, yen totals, outputs; also the run record."""

    run_date: date
    run_dir: Path
    counts: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    holds_by_reason: dict[str, int] = field(default_factory=dict)
    not_eligible_by_reason: dict[str, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    files: list[outputs.TransferFile] = field(default_factory=list)
    transfer_date: date | None = None


class _Stages:
    """Times each stage and tells the progress display (a callable taking the stage name)."""

    def __init__(self, report: RunReport, on_stage: Callable[[str], None] | None) -> None:
        self.report, self.on_stage, self.current, self.started = report, on_stage, None, 0.0

    def start(self, name: str) -> None:
        self.stop()
        self.current, self.started = name, time.perf_counter()
        if self.on_stage:
            self.on_stage(name)

    def stop(self) -> None:
        if self.current:
            self.report.stage_seconds[self.current] = round(time.perf_counter() - self.started, 3)
            self.current = None


def _sink(lf: pl.LazyFrame, path: Path, dataset: str | None = None) -> pl.LazyFrame:
    """Materialise a checkpoint and return a scan of it. Read errors of an input name it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        lf.sink_parquet(path)
    except (pl.exceptions.ComputeError, OSError) as exc:
        if dataset is None:
            raise
        raise InputError.unreadable(dataset, path.parent, str(exc)) from None
    return pl.scan_parquet(path)


def person_keys(state_dir: Path, residents: pl.LazyFrame) -> pl.DataFrame:
    """The surrogate key of every My Number on the register: kept in the state folder, new
    numbers get the next keys in order of first appearance in the register. Keys are counters,
    with no derivation from the My Number (research §3.4)."""
    known_path = state_dir / PERSONS_STATE
    known = (
        pl.read_parquet(known_path) if known_path.exists()
        else pl.DataFrame(schema={"my_number": pl.Int64, "person_key": pl.Int64})
    )
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


def run(
    inputs_dir: Path,
    state_dir: Path,
    out_dir: Path,
    run_date: date,
    cfg: RunConfig,
    on_stage: Callable[[str], None] | None = None,
) -> RunReport:
    """Run one night for `run_date`; publish OUT/<run_date>/ atomically; update the state."""
    if run_date < cfg.benefit.basis_date:
        msg = f"run date {run_date} is before the basis date {cfg.benefit.basis_date}"
        raise ConfigError(msg)
    final_dir = out_dir / run_date.isoformat()
    staging = out_dir / f".{run_date.isoformat()}.partial-{os.getpid()}"
    work = staging / "_checkpoints"
    report = RunReport(run_date=run_date, run_dir=final_dir)
    stages = _Stages(report, on_stage)
    created_out_dir = not out_dir.exists()
    try:
        _run(inputs_dir, state_dir, staging, work, run_date, cfg, report, stages)
        stages.start("publish")
        shutil.rmtree(work)
        _commit_state(staging / "_state", state_dir)
        _publish(staging, final_dir)
        stages.stop()
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if created_out_dir and out_dir.exists() and not any(out_dir.iterdir()):
            out_dir.rmdir()
    return report


def _publish(staging: Path, final_dir: Path) -> None:
    """Replace OUT/<date>/ by the staged folder with renames (each atomic on one filesystem)."""
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old-{os.getpid()}")
        final_dir.rename(old)
        staging.rename(final_dir)
        shutil.rmtree(old)
    else:
        staging.rename(final_dir)


def _commit_state(staged: Path, state_dir: Path) -> None:
    """Move the night's state tables into the state folder, one atomic replace each."""
    state_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(staged.iterdir()):
        os.replace(path, state_dir / path.name)
    staged.rmdir()


def _run(inputs_dir, state_dir, staging, work, run_date, cfg, report, stages) -> None:
    started_at = datetime.now(timezone.utc)
    if staging.exists():
        shutil.rmtree(staging)
    work.mkdir(parents=True)

    # ---- ingest: contracts checked on metadata, every input's checksum recorded ----------------
    stages.start("ingest")
    scanned = plan_inputs(inputs_dir)
    input_record = {
        name: {"path": str(source.path), "files": ingest.file_checksums(source)}
        for name, (_, source) in scanned.items()
    }

    # ---- validate: reject_reason per row, checkpointed ---------------------------------------
    stages.start("validate")
    residents = _sink(validate.checked_residents(scanned["residents"][0], run_date),
                      work / "01_validate" / "residents.parquet", "residents")
    accounts = _sink(validate.checked_accounts(scanned["accounts"][0], run_date),
                     work / "01_validate" / "accounts.parquet", "accounts")
    household_ids = residents.filter(pl.col("reject_reason").is_null()).select("household_id")
    applications = _sink(
        validate.checked_applications(scanned["applications"][0], household_ids, run_date),
        work / "01_validate" / "applications.parquet", "applications",
    )
    for name in ("services", "wallets", "transactions"):
        if name in scanned:  # Mynapoint inputs: read once so that a corrupt file fails tonight
            _sink(scanned[name][0], work / "01_validate" / f"{name}.parquet", name)
    rejected = pl.concat(
        [
            validate.rejects(residents, "residents", ["household_id"]).with_columns(
                application_id=pl.lit(None, pl.Int64)),
            validate.rejects(accounts, "accounts", []).with_columns(
                household_id=pl.lit(None, pl.Int64), application_id=pl.lit(None, pl.Int64)),
            validate.rejects(applications, "applications", ["household_id", "application_id"]),
        ],
        how="diagonal_relaxed",
    ).select("dataset", ROW, "reason", "detail", "household_id", "application_id")
    rejects_path = work / "02_tables" / "rejects.parquet"
    rejected = _sink(rejected, rejects_path)
    summary = validate.reject_summary(rejected)
    rows = {
        name: frame.select(pl.len()).collect().item()
        for name, frame in (("residents", residents), ("accounts", accounts), ("applications", applications))
    }
    pending = {
        name: frame.filter(pl.col("is_pending") & pl.col("reject_reason").is_null()).select(pl.len()).collect().item()
        for name, frame in (("accounts", accounts), ("applications", applications))
    }
    paths = {name: str(source.path) for name, (_, source) in scanned.items()}
    validate.enforce_reject_ratio(rows, paths, summary, cfg.validate_.max_reject_ratio)
    report.rejects_by_reason = {f"{d}.{r}": int(n) for d, r, n in summary.select("dataset", "reason", "rows").iter_rows()}
    for name, n in rows.items():
        report.counts[f"{name}_rows"] = n
        report.counts[f"{name}_rejected"] = int(summary.filter(pl.col("dataset") == name)["rows"].sum())
    for name, n in pending.items():
        report.counts[f"{name}_pending"] = n

    # ---- persons: surrogate keys from the state folder ---------------------------------------
    stages.start("persons")
    valid_residents = residents.filter(pl.col("reject_reason").is_null())
    keys = person_keys(state_dir, valid_residents)
    keys.write_parquet(staging / "_state" / PERSONS_STATE, mkdir=True)
    usable_accounts = accounts.filter(pl.col("reject_reason").is_null() & ~pl.col("is_pending"))
    usable_applications = applications.filter(pl.col("reject_reason").is_null() & ~pl.col("is_pending"))

    # ---- entitle ------------------------------------------------------------------------------
    stages.start("entitle")
    members = _sink(
        entitle.eligible_members(
            valid_residents.join(keys.lazy(), on="my_number", how="left", maintain_order="left"),
            entitle.declined_members(usable_applications),
            cfg.benefit,
        ),
        work / "03_entitle" / "members.parquet",
    )
    households = _sink(entitle.household_entitlements(members, cfg.benefit),
                       work / "03_entitle" / "households.parquet")
    payees = _sink(entitle.payees(members), work / "03_entitle" / "payees.parquet")

    # ---- payees: the account each household is paid into -------------------------------------
    stages.start("payees")
    resolved = payout.resolved_accounts(households, payees, usable_accounts, usable_applications).collect()

    # ---- checks ------------------------------------------------------------------------------
    stages.start("checks")
    checked, compared_pairs = checks.with_holds(resolved, members, cfg.checks)
    report.counts["identity_pairs_compared"] = compared_pairs

    # ---- outcomes: status per household, transfer files, ledger --------------------------------
    stages.start("outcomes")
    transfer_date = reference.next_bank_business_day(run_date)
    report.transfer_date = transfer_date
    outcomes = _outcomes(households, checked, transfer_date, cfg)
    outcomes_path = work / "04_outcomes" / "households.parquet"
    outcomes.write_parquet(outcomes_path, mkdir=True)
    tables = _analyst_tables(outcomes, members, rejects_path, run_date, work)
    ledger_lf = pl.scan_parquet(tables["ledger"])

    # ---- outputs: files, reconciliation, database, run record ---------------------------------
    stages.start("outputs")
    payouts = pl.read_parquet(tables["payouts"])
    report.files = outputs.write_transfer_files(payouts, staging, transfer_date, cfg.zengin)
    totals = _totals(outcomes)
    lt = ledger.ledger_totals(ledger_lf)
    figures = {
        **totals,
        "debit_yen": lt["debit_yen"],
        "credit_yen": lt["credit_yen"],
        "ledger_bank_transfers_yen": lt.get("bank_transfers_yen", 0),
        "ledger_held_payable_yen": lt.get("held_payable_yen", 0),
        "ledger_awaiting_payable_yen": lt.get("awaiting_payable_yen", 0),
        "transfer_files_yen": sum(f.total_yen for f in report.files),
    }
    ledger.check_balanced(figures)
    report.totals = {k: figures[k] for k in ("entitled_yen", "paid_yen", "held_yen", "awaiting_yen",
                                             "transfer_files_yen", "debit_yen", "credit_yen")}
    _count_outcomes(report, outcomes, members, checked)
    runs_row = _runs_row(report, started_at)
    runs_history = _runs_history(state_dir, runs_row, run_date)
    runs_path = work / "02_tables" / "runs.parquet"
    runs_history.write_parquet(runs_path)
    runs_history.write_parquet(staging / "_state" / RUNS_STATE)
    tables["runs"] = runs_path
    database = staging / "analyst.duckdb"
    outputs.write_duckdb(database, tables)
    record = {
        "run_date": run_date.isoformat(),
        "transfer_date": transfer_date.isoformat(),
        "started_at": started_at.isoformat(timespec="seconds"),
        "engine": {"polars": pl.__version__, "bank_master": reference.bank_version()},
        "inputs": input_record,
        "config": config_as_dict(cfg),
        "counts": report.counts,
        "rejects_by_reason": report.rejects_by_reason,
        "not_eligible_by_reason": report.not_eligible_by_reason,
        "holds_by_reason": report.holds_by_reason,
        "totals_yen": report.totals,
        "stage_seconds": report.stage_seconds,
        "outputs": {
            "analyst_database": {"path": str(report.run_dir / database.name),
                                 "sha256": outputs.sha256_of(database)},
            "transfer_files": [
                {"path": str(report.run_dir / f.path.relative_to(staging)),
                 "municipality_code": f.municipality_code, "transfer_date": f.transfer_date.isoformat(),
                 "records": f.records, "total_yen": f.total_yen, "sha256": f.sha256}
                for f in report.files
            ],
        },
    }
    outputs.write_run_record(staging / "run.json", record)


def _outcomes(households: pl.LazyFrame, checked: pl.DataFrame, transfer_date: date,
              cfg: RunConfig) -> pl.DataFrame:
    """Every household with its status: paid, held, awaiting or not_payable, and for the paid
    ones the transfer file (per municipality, parts of at most max_records_per_file)."""
    household_columns = households.collect_schema().names()
    extra = checked.select("household_id", *[c for c in checked.columns if c not in household_columns])
    status = (
        pl.when(pl.col("entitled_yen") == 0).then(pl.lit("not_payable"))
        .when(pl.col("hold_reasons").list.len() > 0).then(pl.lit("held"))
        .when(pl.col("account_source") == "none").then(pl.lit("awaiting"))
        .otherwise(pl.lit("paid"))
    )
    paid = pl.col("status") == "paid"
    rank_in_file_group = pl.int_range(pl.len()).over(["municipality_code", "status"], order_by="household_id")
    part = (rank_in_file_group // cfg.zengin.max_records_per_file + 1).cast(pl.String).str.pad_start(3, "0")
    return (
        households.collect()
        .join(extra, on="household_id", how="left")
        .with_columns(pl.col("hold_reasons").fill_null(pl.lit([], dtype=pl.List(pl.String))))
        .with_columns(status=status)
        .with_columns(
            pl.when(paid).then(pl.col("entitled_yen")).otherwise(0).alias("paid_yen"),
            pl.when(pl.col("status") == "held").then(pl.format("HB-{}", "household_id")).alias("hold_id"),
            pl.when(paid).then(
                pl.format("zengin/{}/{}-{}.txt", pl.lit(f"{transfer_date:%Y%m%d}"), "municipality_code", part)
            ).alias("transfer_file"),
        )
        .sort("household_id")
    )


def _analyst_tables(outcomes: pl.DataFrame, members: pl.LazyFrame, rejects_path: Path, run_date: date,
                    work: Path) -> dict[str, Path]:
    """Write every analyst table as a Parquet checkpoint: no My Number in any of them."""
    folder = work / "02_tables"
    folder.mkdir(parents=True, exist_ok=True)
    day = pl.lit(run_date).alias("run_date")
    account = [*payout.ACCOUNT_KEY]
    tables = {
        "households": outcomes.select(
            day, "household_id", "municipality_code", "status", "registered_members", "eligible_members",
            "declined_members", "counted_members", "entitled_yen", "paid_yen", "not_payable_reason",
            "payee_person_key", "account_source", "hold_id", "transfer_file",
        ),
        "payouts": outcomes.filter(pl.col("status") == "paid").select(
            day, "household_id", "municipality_code", "payee_person_key",
            pl.col("counted_members").alias("members_paid"), pl.col("entitled_yen").alias("amount_yen"),
            "account_source", *account,
            kana.zengin_name_expr(pl.col("holder_name_kana")).alias("payee_name_kana"),
            "transfer_file",
        ),
        "holds": outcomes.filter(pl.col("status") == "held").select(
            day, "hold_id", "household_id", "municipality_code", "payee_person_key",
            pl.col("entitled_yen").alias("amount_yen"), "hold_reasons",
            pl.col("hold_evidence").alias("evidence"), "account_source", *account,
        ),
        "awaiting": outcomes.filter(pl.col("status") == "awaiting").select(
            day, "household_id", "municipality_code", "payee_person_key",
            pl.col("entitled_yen").alias("amount_yen"), pl.lit("no_account").alias("reason"),
        ),
    }
    paths = {}
    for name, frame in tables.items():
        paths[name] = folder / f"{name}.parquet"
        frame.write_parquet(paths[name])
    household_status = outcomes.select("household_id", pl.col("status").alias("household_status")).lazy()
    paths["persons"] = folder / "persons.parquet"
    (
        members.join(household_status, on="household_id", how="left")
        .select(
            day, "person_key", "household_id", "municipality_code", "is_head", "sex",
            pl.col("birth_date").dt.year().alias("birth_year"), "not_eligible_reason", "is_declined",
            "is_living", "is_counted", "household_status",
        )
        .sort("household_id", "person_key")
        .sink_parquet(paths["persons"])
    )
    paths["rejects"] = folder / "rejects_table.parquet"
    pl.scan_parquet(rejects_path).select(day, pl.all()).sort("dataset", ROW).sink_parquet(paths["rejects"])
    paths["ledger"] = folder / "ledger.parquet"
    ledger.ledger_entries(outcomes.lazy(), run_date).sink_parquet(paths["ledger"])
    return paths


def _totals(outcomes: pl.DataFrame) -> dict[str, int]:
    by_status = {s: int(v) for s, v in outcomes.group_by("status").agg(pl.col("entitled_yen").sum()).iter_rows()}
    return {
        "entitled_yen": int(outcomes["entitled_yen"].sum()),
        "paid_yen": by_status.get("paid", 0),
        "held_yen": by_status.get("held", 0),
        "awaiting_yen": by_status.get("awaiting", 0),
    }


def _count_outcomes(report: RunReport, outcomes: pl.DataFrame, members: pl.LazyFrame,
                    checked: pl.DataFrame) -> None:
    for status, n in outcomes.group_by("status").len().sort("status").iter_rows():
        report.counts[f"households_{status}"] = int(n)
    report.counts["households"] = outcomes.height
    person_counts = members.select(
        pl.len().alias("persons"),
        pl.col("is_eligible").sum().alias("persons_eligible"),
        pl.col("is_counted").sum().alias("persons_paid_for"),
    ).collect().row(0, named=True)
    report.counts.update({k: int(v) for k, v in person_counts.items()})
    reasons = members.group_by("not_eligible_reason").len().drop_nulls().sort("not_eligible_reason").collect()
    report.not_eligible_by_reason = {r: int(n) for r, n in reasons.iter_rows()}
    held = outcomes.filter(pl.col("status") == "held").select(pl.col("hold_reasons").explode())
    report.holds_by_reason = {r: int(n) for r, n in held.group_by("hold_reasons").len()
                              .sort("hold_reasons").iter_rows()}
    report.counts["transfer_files"] = len(report.files)
    report.counts["transfer_records"] = sum(f.records for f in report.files)


def _runs_row(report: RunReport, started_at: datetime) -> pl.DataFrame:
    return pl.DataFrame({
        "run_date": [report.run_date],
        "started_at": [started_at.replace(tzinfo=None)],
        "transfer_date": [report.transfer_date],
        "households": [report.counts.get("households", 0)],
        "households_paid": [report.counts.get("households_paid", 0)],
        "households_held": [report.counts.get("households_held", 0)],
        "households_awaiting": [report.counts.get("households_awaiting", 0)],
        "entitled_yen": [report.totals["entitled_yen"]],
        "paid_yen": [report.totals["paid_yen"]],
        "held_yen": [report.totals["held_yen"]],
        "awaiting_yen": [report.totals["awaiting_yen"]],
        "transfer_files": [len(report.files)],
    })


def _runs_history(state_dir: Path, row: pl.DataFrame, run_date: date) -> pl.DataFrame:
    path = state_dir / RUNS_STATE
    if not path.exists():
        return row
    previous = pl.read_parquet(path).filter(pl.col("run_date") != run_date)
    return pl.concat([previous, row], how="vertical_relaxed").sort("run_date")
