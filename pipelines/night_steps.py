"""Steps of the nightly run that pipelines/nightly.py composes: the Mynapoint night, decisions
in force, transfer-file assignment, reconciliation, counts, run history and analyst tables."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from engine import ledger, outputs, payout, point_checks, points, settlement, standing, state
from engine.config import RunConfig
from engine.errors import InputError, is_disk_full
from engine.ingest import ROW


if TYPE_CHECKING:
    from pipelines.nightly import RunReport


# checkpoints are scratch, written once and read a few times within the night: lz4 writes in
# about half the time of zstd and reads faster, for files ~40% larger; without the column
# statistics (min, max per page), which no read of a checkpoint uses, a write takes ~12% less
# (benchmarks/RESULTS.md)
CHECKPOINT = {"compression": "lz4", "statistics": False}


def sink(lf: pl.LazyFrame | Callable[[], pl.LazyFrame], path: Path, dataset: str | None = None) -> pl.LazyFrame:
    """Materialise a checkpoint and return a scan of it. Read errors of an input name it, also
    those of the reads that plan the query (`lf` given as a function that builds it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _reading(lambda: (lf() if callable(lf) else lf).sink_parquet(path, **CHECKPOINT), dataset, path.parent)
    return pl.scan_parquet(path)


def collected(lf: Callable[[], pl.LazyFrame], dataset: str, source: Path) -> pl.DataFrame:
    """`lf()` collected: for a frame that one step reads several times and that fits in memory
    (a checkpoint would be written once and decoded at each read). Read errors name `dataset`
    and its `source`, as `sink` does."""
    return _reading(lambda: lf().collect(), dataset, source)


def _reading(run: Callable[[], pl.DataFrame | None], dataset: str | None, where: Path) -> pl.DataFrame | None:
    try:
        return run()
    except (pl.exceptions.ComputeError, OSError) as exc:
        if dataset is None or is_disk_full(exc):  # a full disk is not a bad input
            raise
        raise InputError.unreadable(dataset, where, str(exc)) from None


def mynapoint_night(scanned, persons: pl.LazyFrame, base: state.Version, decisions: pl.DataFrame, plan,
            staging: Path, run_date: date, cfg: RunConfig, report: RunReport) -> dict:
    """The Mynapoint night: checks, wallet holds, grants and clawbacks, provider settlement
    files, ledger lines, state tables and analyst tables (engine/point_checks.py, engine/points.py,
    engine/settlement.py)."""
    wallets, services = scanned["wallets"][0], scanned["services"][0].collect()
    # the checks and grants read a person only as a wallet's owner: the register narrowed once to
    # the wallets' My Numbers (a fifth of it), not grouped and joined whole three times
    persons = persons.join(wallets.select("my_number"), on="my_number", how="semi").collect().lazy()
    # read by four steps below (holds, points, rejects, count), some of them twice: kept in memory,
    # not checkpointed (a national shard's ~8M transactions take ~1 GB; the checkpoint's write and
    # reads cost ~0.5 s per 3M residents: benchmarks/RESULTS.md, "The checked transactions in memory")
    checked = collected(lambda: point_checks.checked_transactions(scanned["transactions"][0], wallets, run_date),
                        "transactions", scanned["transactions"][1].path).lazy()
    holds_tonight = point_checks.wallet_holds(wallets, checked, persons, run_date,
                                              min_refund_cycles=cfg.mynapoint.min_refund_cycles,
                                              min_refunded_percent=cfg.mynapoint.min_refunded_percent)
    in_force = point_checks.holds_in_force(holds_tonight, decisions, run_date)
    prior = points.PointsState(base.scan("points_transactions"), base.scan("points_refunds"),
                               base.scan("points_persons"))
    night = points.points_night(checked, wallets, services.lazy(), persons, prior, in_force, cfg.mynapoint,
                                run_date)
    files = settlement.write_settlement_files(night.settlement, services, staging, run_date)
    lines = settlement.points_ledger_entries(night.grants.lazy(), run_date, f"{plan.folder}/").collect()
    figures = settlement.points_reconciliation(night.totals, files, lines)
    state_tables = dict(zip(("points_transactions", "points_refunds", "points_persons"),
                            pl.collect_all(list(night.state))))
    state_tables["point_holds"] = standing.point_holds_after(base.table("point_holds"), holds_tonight, in_force,
                                                             decisions, run_date)
    rejects = checked.filter(pl.col("reject_reason").is_not_null()).select(
        pl.lit("transactions").alias("dataset"), pl.col("reject_reason").alias("reason"), "detail",
        "transaction_id").collect()
    report.counts["transactions_rows"] = checked.select(pl.len()).collect().item()
    report.counts["transactions_rejected"] = rejects.height
    report.counts["wallets_held"] = in_force.height
    for reason, n in rejects.group_by("reason").len().sort("reason").iter_rows():
        report.rejects_by_reason[f"transactions.{reason}"] = int(n)
    for reason, n in in_force.explode("reasons").group_by("reasons").len().sort("reasons").iter_rows():
        report.holds_by_reason[f"wallet.{reason}"] = int(n)
    analyst = {
        "points": night.grants,
        "point_settlements": night.settlement,
        "point_holds": state_tables["point_holds"],
        "points_ignored": night.ignored.group_by("service_id", "reason").agg(
            pl.len().alias("transactions"), pl.col("amount_yen").sum()).sort("service_id", "reason"),
    }
    return {"state": state_tables, "ledger": lines, "figures": figures, "rejects": rejects,
            "files": files, "analyst": analyst}


def decisions(recorded: pl.DataFrame, scanned: dict, run_date: date) -> pl.DataFrame:
    """Decisions in force tonight: those recorded in the state, plus the optional `decisions`
    input's rows dated on or before the run date that are not recorded yet."""
    if "decisions" not in scanned:
        return recorded
    given = (
        scanned["decisions"][0].filter(pl.col("decided_on") <= run_date)
        .select(*[c for c in state.SCHEMAS["decisions"].names() if c != "source"], source=pl.lit("input"))
        .collect()
    )
    bad = given.filter(~pl.col("decision").is_in(["release", "deny"]) | pl.col("hold_id").is_null())
    if bad.height:
        msg = (f"decisions: {bad.height} row(s) with a decision other than release/deny or no hold_id, "
               f"e.g. {bad.select('hold_id', 'decision').head(3).rows()}")
        raise InputError(msg)
    new = given.join(recorded, on=["hold_id", "decision", "decided_by", "decided_on"], how="anti")
    return pl.concat([recorded, new], how="vertical_relaxed")


def with_transfer_files(payments: pl.DataFrame, transfer_date: date, max_records: int) -> pl.DataFrame:
    """Assign each payment to its file: one per municipality and transfer date, in parts of at
    most `max_records` records, households in id order."""
    rank = pl.int_range(pl.len()).over("municipality_code", order_by="household_id")
    part = (rank // max_records + 1).cast(pl.String).str.pad_start(3, "0")
    return payments.sort("household_id", "paid_on").with_columns(
        pl.format("zengin/{}/{}-{}.txt", pl.lit(f"{transfer_date:%Y%m%d}"), "municipality_code", part)
        .alias("transfer_file")
    )


def reconcile(decided: pl.DataFrame, old_positions: pl.DataFrame, lines: pl.DataFrame, ledger_all: pl.DataFrame,
              files: pl.DataFrame, written: list[outputs.TransferFile], new_payments: pl.DataFrame,
              reissued: pl.DataFrame) -> dict[str, int]:
    """Check, to the yen, for the night and cumulatively; raise before anything is published."""
    before = ledger.balances(old_positions).drop("household_id").sum().row(0, named=True)
    balance = {a: int(d - c) for a, d, c in ledger_all.group_by("account").agg(
        pl.col("debit_yen").sum(), pl.col("credit_yen").sum()).iter_rows()}
    tonight = {a: int(c - d) for a, d, c in lines.group_by("account").agg(
        pl.col("debit_yen").sum(), pl.col("credit_yen").sum()).iter_rows()}
    live_files = files.filter(pl.col("status") != "superseded")
    figures = {
        "entitled_yen": int(decided["recognised_yen"].sum()),
        "paid_yen": int(decided["paid_yen"].sum()),
        "held_yen": int(decided["held_yen"].sum()),
        "awaiting_yen": int(decided["awaiting_yen"].sum()),
        "denied_yen": int(decided["denied_yen"].sum()),
        "paid_tonight_yen": int(new_payments["amount_yen"].sum()),
        "reissued_yen": int(reissued["amount_yen"].sum()),
        "transfer_files_yen": sum(f.total_yen for f in written),
        "ledger_debit_tonight_yen": int(lines["debit_yen"].sum()),
        "ledger_credit_tonight_yen": int(lines["credit_yen"].sum()),
        "ledger_debit_yen": int(ledger_all["debit_yen"].sum()),
        "ledger_credit_yen": int(ledger_all["credit_yen"].sum()),
        "ledger_bank_transfers_yen": -balance.get("bank_transfers", 0),
        "ledger_bank_transfers_tonight_yen": tonight.get("bank_transfers", 0),
        "ledger_held_payable_yen": -balance.get("held_payable", 0),
        "ledger_awaiting_payable_yen": -balance.get("awaiting_payable", 0),
        "ledger_denied_yen": -balance.get("benefit_denied", 0),
        "ledger_expense_yen": balance.get(ledger.EXPENSE, 0),
        "live_transfer_files_yen": int(live_files["total_yen"].sum()),
        "ledger_expense_tonight_yen": -tonight.get(ledger.EXPENSE, 0),
        "ledger_held_payable_tonight_yen": tonight.get("held_payable", 0),
        "ledger_awaiting_payable_tonight_yen": tonight.get("awaiting_payable", 0),
        "ledger_denied_tonight_yen": tonight.get("benefit_denied", 0),
    }
    # the night's changes of the households' standing, from the positions before tonight
    figures["entitled_tonight_yen"] = figures["entitled_yen"] - int(before.get(ledger.EXPENSE) or 0)
    figures["held_tonight_yen"] = figures["held_yen"] - int(before.get("held_payable") or 0)
    figures["awaiting_tonight_yen"] = figures["awaiting_yen"] - int(before.get("awaiting_payable") or 0)
    figures["denied_tonight_yen"] = figures["denied_yen"] - int(before.get("benefit_denied") or 0)
    ledger.check_balanced(figures)
    return figures


def count(report: RunReport, decided: pl.DataFrame, members: pl.LazyFrame) -> None:
    for status, n in decided.group_by("status").len().sort("status").iter_rows():
        report.counts[f"households_{status}"] = int(n)
    report.counts["households"] = decided.height
    report.counts["households_paid_tonight"] = decided.filter(pl.col("pay_tonight_yen") > 0).height
    person_counts = members.select(
        pl.len().alias("persons"),
        pl.col("is_eligible").sum().alias("persons_eligible"),
        pl.col("is_counted").sum().alias("persons_paid_for"),
    ).collect().row(0, named=True)
    report.counts.update({k: int(v) for k, v in person_counts.items()})
    reasons = members.group_by("not_eligible_reason").len().drop_nulls().sort("not_eligible_reason").collect()
    report.not_eligible_by_reason = {r: int(n) for r, n in reasons.iter_rows()}
    held = decided.filter(pl.col("status") == "held").select(pl.col("hold_reasons").explode())
    report.holds_by_reason = {r: int(n) for r, n in held.group_by("hold_reasons").len()
                              .sort("hold_reasons").iter_rows()}
    report.counts["transfer_files"] = len(report.files)
    report.counts["transfer_records"] = sum(f.records for f in report.files)


def runs_after(runs: pl.DataFrame, report: RunReport, plan, base: state.Version) -> pl.DataFrame:
    """The run history with tonight's row (a re-run computes the same row as its night did)."""
    c, t = report.counts, report.totals
    row = pl.DataFrame([{
        "run_date": report.run_date, "mode": "night" if plan.mode == "rerun" else plan.mode, "fingerprint": report.fingerprint,
        "reason": plan.reason, "version": base.number + 1, "households": c.get("households", 0),
        "households_paid": c.get("households_paid", 0), "households_held": c.get("households_held", 0),
        "households_awaiting": c.get("households_awaiting", 0),
        "households_denied": c.get("households_denied", 0),
        "entitled_yen": t["entitled_yen"], "paid_yen": t["paid_yen"], "held_yen": t["held_yen"],
        "awaiting_yen": t["awaiting_yen"], "denied_yen": t["denied_yen"],
        "paid_tonight_yen": t["paid_tonight_yen"], "transfer_files": len(report.files),
    }], schema=state.SCHEMAS["runs"])
    return pl.concat([runs, row], how="vertical_relaxed")


def analyst_tables(work: Path, run_date: date, *, decided: pl.DataFrame, in_files: pl.DataFrame,
                    members: pl.LazyFrame, rejects_path: Path, holds: pl.DataFrame,
                    ledger_all: pl.DataFrame | Path, runs: pl.DataFrame | None, files: pl.DataFrame | None,
                    decisions: pl.DataFrame | None, points_outputs: dict[str, pl.DataFrame]) -> dict[str, Path]:
    """Write every analyst table as a Parquet checkpoint: no My Number in any of them. A shard
    of a national night passes None for the global tables (runs, files, decisions), and the
    ledger as the state's part already written (copied: the same rows, not encoded twice)."""
    folder = work / "05_tables"
    folder.mkdir(parents=True, exist_ok=True)
    day = pl.lit(run_date).alias("run_date")
    tables = {
        "households": decided.select(
            day, "household_id", "municipality_code", "status", "registered_members", "eligible_members",
            "declined_members", "counted_members", "entitled_yen", "paid_before_yen", "pay_tonight_yen",
            "paid_yen", "held_yen", "awaiting_yen", "denied_yen", "not_payable_reason", "payee_person_key",
            "account_source", "hold_id",
        ),
        "payouts": in_files.select(
            day, "household_id", "municipality_code", "payee_person_key", "amount_yen", "kind",
            *payout.ACCOUNT_KEY, "payee_name_kana", "transfer_file", pl.col("paid_on").alias("first_paid_on"),
        ),
        "holds": holds.join(decided.select("hold_id", "payee_person_key", "account_source"), on="hold_id",
                            how="left").select(day, pl.all()),
        "awaiting": decided.filter(pl.col("status") == "awaiting").select(
            day, "household_id", "municipality_code", "payee_person_key",
            pl.col("awaiting_yen").alias("amount_yen"), pl.lit("no_account").alias("reason"),
        ),
        "ledger": ledger_all if isinstance(ledger_all, pl.DataFrame) else None,
        "runs": runs,
        "files": files,
        "decisions": decisions,
        **{name: frame.select(day, pl.all()) for name, frame in points_outputs.items()},
    }
    paths = {}
    for name, frame in tables.items():
        if frame is None:
            continue
        paths[name] = folder / f"{name}.parquet"
        frame.write_parquet(paths[name], **state.PARQUET)
    if not isinstance(ledger_all, pl.DataFrame):
        paths["ledger"] = shutil.copyfile(ledger_all, folder / "ledger.parquet")
    household_status = decided.select("household_id", pl.col("status").alias("household_status")).lazy()
    paths["persons"] = folder / "persons.parquet"
    (  # in the members' order, the registry's: sorted by household it took 1.6x as long (3M members)
        members.join(household_status, on="household_id", how="left", maintain_order="left")
        .select(
            day, "person_key", "household_id", "municipality_code", "is_head", "sex",
            pl.col("birth_date").dt.year().alias("birth_year"), "not_eligible_reason", "is_declined",
            "is_living", "is_counted", "household_status",
        )
        .sink_parquet(paths["persons"], **state.PARQUET)
    )
    paths["rejects"] = folder / "rejects.parquet"
    pl.scan_parquet(rejects_path).select(day, pl.all()).sort("dataset", ROW) \
        .sink_parquet(paths["rejects"], **state.PARQUET)
    return paths
