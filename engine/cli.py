"""The `kyufu` command: generate synthetic national data, run a night, run the demo.

Deliberate failures (EngineError) print their message and exit non-zero; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

from engine import allocator

allocator.configure()  # before anything loads Polars: jemalloc reads its setting once

import sys
import time
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine.errors import EngineError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Kyufu: payout and cashless-points settlement engine.")
# piped output (logs, CI) gets a fixed, wide page; a terminal keeps its own width
console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
out = Console(width=None if sys.stdout.isatty() else 140)


def _fail(exc: EngineError) -> None:
    console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def _parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        console.print(f"[bold red]error:[/] --date {value!r} is not a date in the form YYYY-MM-DD")
        raise typer.Exit(2) from None


@app.command()
def generate(
    residents: Annotated[int, typer.Option(help="number of residents", min=1)] = 100_000,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same files")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="folder to write the input datasets to")] = Path("data/generated"),
    workers: Annotated[int | None, typer.Option(
        help="processes generating chunks side by side (the files are the same for any number); "
             "default: one per usable core", min=1)] = None,
) -> None:
    """Write a synthetic, Japan-shaped set of every input dataset, with planted faults and their
    ground truth in OUT/truth/."""
    from pipelines import generate as generator

    workers = workers or generator.usable_cores()
    started = time.perf_counter()
    with console.status(f"generating {residents:,} residents (seed {seed}) into {out_dir} ..."):
        try:
            report = generator.generate(residents=residents, seed=seed, out=out_dir, workers=workers)
        except EngineError as exc:
            _fail(exc)
    seconds = time.perf_counter() - started
    table = Table(title=f"generated in {seconds:.1f} s → {out_dir}", show_header=True)
    table.add_column("dataset")
    table.add_column("rows", justify="right")
    for name, rows in report.rows.items():
        table.add_row(name, f"{rows:,}")
    out.print(table)


def run_night(inputs: Path, state: Path, out_dir: Path, run_date: date, config: Path | None,
              correction: str | None = None, shards: int | None = None, work_dir: Path | None = None,
              check_disk: bool = True):
    from engine.config import load_config
    from pipelines import nightly

    cfg = load_config(config)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("starting")

        def on_stage(name: str) -> None:
            progress.update(task, description=f"night {run_date}: {name}")

        return nightly.run(inputs, state, out_dir, run_date, cfg, correction=correction, on_stage=on_stage,
                           shards=shards, work_dir=work_dir, check_disk=check_disk)


def print_summary(report) -> None:
    t = report.totals
    c = report.counts
    if report.mode == "rerun":
        state = "published outputs identical" if report.unchanged else "outputs published again"
        out.print(f"night {report.run_date} was run before with the same inputs: nothing changed ({state})")
    title = f"Kyufu night {report.run_date} ({report.mode}) → transfers on {report.transfer_date}"
    table = Table(title=title, show_header=True, title_justify="left")
    table.add_column("households to date")
    table.add_column("households", justify="right")
    table.add_column("yen", justify="right")
    table.add_row("entitled", f"{c.get('households', 0) - c.get('households_not_payable', 0):,}",
                  f"¥{t['entitled_yen']:,}")
    table.add_row("paid", f"{c.get('households_paid', 0):,}", f"¥{t['paid_yen']:,}")
    table.add_row("  of which tonight (new Zengin payments)", f"{c.get('households_paid_tonight', 0):,}",
                  f"¥{t['paid_tonight_yen']:,}")
    table.add_row("held for review", f"{c.get('households_held', 0):,}", f"¥{t['held_yen']:,}")
    table.add_row("awaiting application", f"{c.get('households_awaiting', 0):,}", f"¥{t['awaiting_yen']:,}")
    table.add_row("denied", f"{c.get('households_denied', 0):,}", f"¥{t['denied_yen']:,}")
    table.add_row("not payable", f"{c.get('households_not_payable', 0):,}", "¥0")
    out.print(table)
    out.print(
        f"residents {c['residents_rows']:,} (rejected {c['residents_rejected']:,}), "
        f"accounts {c['accounts_rows']:,} (rejected {c['accounts_rejected']:,}, pending {c['accounts_pending']:,}), "
        f"applications {c['applications_rows']:,} (rejected {c['applications_rejected']:,}, "
        f"pending {c['applications_pending']:,})"
    )
    if report.holds_by_reason:
        out.print("holds: " + ", ".join(f"{k} {v:,}" for k, v in report.holds_by_reason.items()))
    if report.rejects_by_reason:
        out.print("rejects: " + ", ".join(f"{k} {v:,}" for k, v in report.rejects_by_reason.items()))
    reissued = f" (¥{t['reissued_yen']:,} re-issued from unsent files)" if t.get("reissued_yen") else ""
    out.print(f"transfer files: ¥{t['transfer_files_yen']:,} in {len(report.files):,} files{reissued}; "
              f"benefit ledger tonight: debits ¥{t['ledger_debit_tonight_yen']:,} = credits "
              f"¥{t['ledger_credit_tonight_yen']:,}; reconciled to the yen")
    if "points_net_yen" in t:
        out.print(f"Mynapoint: granted ¥{t['points_granted_yen']:,}, clawed back ¥{t['points_clawed_back_yen']:,}, "
                  f"net ¥{t['points_net_yen']:,} in {t['points_files_records']:,} settlement lines; "
                  f"{c.get('wallets_held', 0):,} wallets held")
    seconds = sum(report.stage_seconds.values())
    pieces = f" in {report.shards} shards" if report.shards else ""
    out.print(f"took {seconds:.1f} s{pieces}; outputs in {report.run_dir}/ (run.json, analyst.duckdb, zengin/, settlement/); "
              f"state version {report.state_version}")


@app.command()
def run(
    inputs: Annotated[Path, typer.Option(help="folder of input datasets (Parquet)")],
    state: Annotated[Path, typer.Option(help="state folder kept between nights")],
    out_dir: Annotated[Path, typer.Option("--out", help="output folder; the night goes to OUT/<date>/")],
    run_date: Annotated[str, typer.Option("--date", help="the night's date, YYYY-MM-DD")],
    config: Annotated[Path | None, typer.Option(help="TOML file overriding the defaults")] = None,
    correction: Annotated[str | None, typer.Option(
        help="re-run a night whose inputs changed, paying only the difference; the reason is recorded")] = None,
    shards: Annotated[int | None, typer.Option(
        help="run the night in this many shards (0: one piece); by default one shard per 5M residents "
             "above 5M; a state keeps the count of its first night", min=0, max=999)] = None,
    work_dir: Annotated[Path | None, typer.Option(
        help="where the night's checkpoints (its spill) go; by default inside OUT")] = None,
    skip_disk_check: Annotated[bool, typer.Option(
        help="start even if a disk has less free space than the night is estimated to need")] = False,
) -> None:
    """Run one night: validate, entitle, resolve payees, check, write Zengin files, ledger,
    analyst database and run record. The same date with the same inputs changes nothing."""
    day = _parse_date(run_date)
    try:
        report = run_night(inputs, state, out_dir, day, config, correction, shards, work_dir,
                           check_disk=not skip_disk_check)
    except EngineError as exc:
        _fail(exc)
    print_summary(report)


@app.command()
def demo(
    residents: Annotated[int, typer.Option(help="residents in the sample", min=1)] = 100_000,
    workdir: Annotated[Path, typer.Option(help="where the demo writes")] = Path("demo"),
    seed: Annotated[int, typer.Option()] = 2020,
    run_date: Annotated[str, typer.Option("--date")] = "2020-12-31",
) -> None:
    """Generate a sample of residents and run one night on it (both programmes: the benefit and
    Mynapoint's first four months). Run it again to see a re-run change nothing; with other
    --residents or --seed the demo starts again from an empty state."""
    import json
    import shutil

    inputs = workdir / "inputs"
    sample = {"residents": residents, "seed": seed}
    marker = workdir / "demo.json"
    previous = json.loads(marker.read_text()) if marker.exists() else None
    if previous != sample and (workdir / "state").exists():
        out.print(f"new sample {sample}: the demo starts again from an empty state")
        for folder in (workdir / "state", workdir / "out"):
            shutil.rmtree(folder, ignore_errors=True)
    generate(residents=residents, seed=seed, out_dir=inputs)
    day = _parse_date(run_date)
    try:
        report = run_night(inputs, workdir / "state", workdir / "out", day, None)
    except EngineError as exc:
        _fail(exc)
    marker.write_text(json.dumps(sample) + "\n")  # the sample the demo's state belongs to
    print_summary(report)
    out.print(f"\nholds: .venv/bin/kyufu holds list --state {workdir / 'state'}")
    out.print(f"\nexplore: .venv/bin/python -c \"import duckdb; print(duckdb.connect('{report.run_dir}/analyst.duckdb')"
              ".sql('select status, count(*), sum(paid_yen) from households group by all'))\"")


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Option("--run", help="the night's output folder, OUT/<date>")],
    state: Annotated[Path, typer.Option(help="the state folder the night used")],
    inputs: Annotated[Path, typer.Option(help="the generated inputs, with truth/")],
) -> None:
    """Precision and recall of every check against the generator's ground truth; also written
    to the night's run.json under "evaluation"."""
    import json

    from engine import evaluate as evaluation

    try:
        scores = evaluation.evaluation(run_dir, state, inputs)
    except EngineError as exc:
        _fail(exc)
    table = Table(title=f"detection quality of {run_dir}", title_justify="left")
    for column in ("check", "kind", "truth", "flagged", "true positives", "precision", "recall"):
        table.add_column(column, justify="left" if column in ("check", "kind") else "right", no_wrap=True)
    for row in scores.iter_rows(named=True):
        table.add_row(row["check"], row["kind"], f"{row['truth']:,}", f"{row['flagged']:,}",
                      f"{row['true_positives']:,}", f"{row['precision']:.3f}", f"{row['recall']:.3f}")
    out.print(table)
    record_path = run_dir / "run.json"
    record = json.loads(record_path.read_text(encoding="utf-8"))
    record["evaluation"] = scores.to_dicts()
    partial = record_path.with_name("run.json.partial")
    partial.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    partial.replace(record_path)


files_app = typer.Typer(no_args_is_help=True, help="Transfer files: list them, mark them sent.")
holds_app = typer.Typer(no_args_is_help=True, help="Holds: list them, record decisions.")
app.add_typer(files_app, name="files")
app.add_typer(holds_app, name="holds")


def _print_frame(frame, title: str) -> None:
    table = Table(title=f"{title} ({frame.height:,})", title_justify="left")
    for column in frame.columns:
        table.add_column(column, overflow="fold")
    for row in frame.head(200).iter_rows():
        table.add_row(*["" if v is None else str(v) for v in row])
    out.print(table)
    if frame.height > 200:
        out.print(f"… {frame.height - 200:,} more; use --csv FILE for all of them")


@files_app.command("list")
def files_list(
    state: Annotated[Path, typer.Option(help="the state folder")],
    status: Annotated[str | None, typer.Option(help="produced, sent or superseded")] = None,
) -> None:
    """List the transfer files the engine produced and whether they were sent."""
    from pipelines import operations

    try:
        frame = operations.files(state, status)
    except EngineError as exc:
        _fail(exc)
    _print_frame(frame.select("transfer_file", "transfer_date", "records", "total_yen", "status",
                              "sent_on", "sent_by"), "transfer files")


@files_app.command("sent")
def files_sent(
    names: Annotated[list[str], typer.Argument(help="files as listed by `kyufu files list`")],
    state: Annotated[Path, typer.Option(help="the state folder")],
    by: Annotated[str, typer.Option(help="who sent them")],
    on: Annotated[str, typer.Option(help="when, YYYY-MM-DD")] = date.today().isoformat(),
) -> None:
    """Mark transfer files as sent to the bank: a sent file is never produced again."""
    from pipelines import operations

    try:
        version = operations.mark_sent(state, names, by, _parse_date(on))
    except EngineError as exc:
        _fail(exc)
    out.print(f"{len(names)} file(s) marked sent by {by} (state version {version.number})")


@holds_app.command("list")
def holds_list(
    state: Annotated[Path, typer.Option(help="the state folder")],
    status: Annotated[str, typer.Option(help="open, released, denied, cleared, or all")] = "open",
    reason: Annotated[str | None, typer.Option(help="only holds with this reason code")] = None,
    municipality: Annotated[str | None, typer.Option(help="only this municipality code")] = None,
    csv: Annotated[Path | None, typer.Option(help="write all matching holds to this CSV file")] = None,
    evidence: Annotated[bool, typer.Option(help="print each hold's evidence too")] = False,
    wallets: Annotated[bool, typer.Option(help="Mynapoint wallet holds instead of household holds")] = False,
) -> None:
    """List holds with their reasons, the decision in force, and (--evidence) the evidence."""
    from pipelines import operations

    try:
        frame = operations.holds(state, status=None if status == "all" else status, reason=reason,
                                 municipality=municipality, wallets=wallets)
    except EngineError as exc:
        _fail(exc)
    if wallets:
        frame = frame.rename({"wallet_id": "household_id", "reasons": "hold_reasons"}).with_columns(
            municipality_code=None, amount_yen=0)
    shown = frame.select("hold_id", "household_id", "municipality_code", "amount_yen",
                         pl_join("hold_reasons"), "status", "decision", "evidence")
    if wallets:
        shown = shown.rename({"household_id": "wallet_id"}).drop("municipality_code", "amount_yen")
    if csv:
        shown.write_csv(csv)
        out.print(f"{frame.height:,} hold(s) written to {csv}")
    elif evidence:
        for hold_id, text in shown.select("hold_id", "evidence").head(200).iter_rows():
            out.print(f"[bold]{hold_id}[/]\n{text}\n", highlight=False)
    else:
        _print_frame(shown.drop("evidence"), "holds")


def pl_join(column: str):
    import polars as pl

    return pl.col(column).list.join(",").alias(column)


@holds_app.command("decide")
def holds_decide(
    state: Annotated[Path, typer.Option(help="the state folder")],
    hold: Annotated[list[str] | None, typer.Option(help="hold id(s), e.g. HB-123")] = None,
    decision: Annotated[str | None, typer.Option(help="release or deny")] = None,
    by: Annotated[str | None, typer.Option(help="who decides")] = None,
    note: Annotated[str, typer.Option(help="why")] = "",
    on: Annotated[str, typer.Option(help="when, YYYY-MM-DD")] = date.today().isoformat(),
    file: Annotated[Path | None, typer.Option(
        help="a CSV or Parquet of decisions: hold_id, decision, decided_by, decided_on, note")] = None,
) -> None:
    """Record decisions on holds (append-only): a released hold is paid the next night, a denied
    one is closed in the ledger."""
    import polars as pl

    from pipelines import operations

    if file is not None:
        try:
            frame = pl.read_parquet(file) if file.suffix == ".parquet" else pl.read_csv(
                file, schema_overrides={"decided_on": pl.Date, "note": pl.String})
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same error to the operator
            console.print(f"[bold red]error:[/] cannot read decisions file {file}: {exc}")
            raise typer.Exit(2) from None
        source = str(file)
    elif hold and decision and by:
        frame = pl.DataFrame({"hold_id": hold, "decision": [decision] * len(hold),
                              "decided_by": [by] * len(hold), "decided_on": [_parse_date(on)] * len(hold),
                              "note": [note] * len(hold)})
        source = "cli"
    else:
        console.print("[bold red]error:[/] give --hold, --decision and --by, or --file")
        raise typer.Exit(2)
    try:
        version = operations.record_decisions(state, frame, source)
    except EngineError as exc:
        _fail(exc)
    out.print(f"{frame.height} decision(s) recorded (state version {version.number}); "
              "they take effect from the next night")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
