"""A national night at a given size: time and memory of every stage, against the DuckDB baseline.

    .venv/bin/python benchmarks/national.py --residents 1000000 [--seed 0] [--workdir DIR] [--runs 2]

1. Inputs of N residents: reused from the benchmark cache (<tmp>/kyufu-benchmarks/inputs-N-seedS/,
   benchmarks/conftest.py) when complete, else generated with workers=2; `--measure-generator`
   generates a fresh set into WORKDIR in a subprocess to time it and read its peak RSS.
2. The night (run date 2021-12-31, the end of the campaign: every application and transaction
   has arrived) `--runs` times, each from an empty state, each in its own subprocess: this
   script's `--night-child` mode, which is `python -m engine.cli run` without the progress display,
   plus a line per stage start in a log, so that the memory sampler can name the stage of each
   peak. Per stage: wall seconds (timings.json), rows per second, peak RSS while the stage ran
   (sampled every 0.2 s, summed over the process tree), CPU seconds of the process tree and the
   machine's share of CPU time waiting on the disk (sampled with the RSS); per night: wall
   seconds, CPU seconds and peak RSS (the kernel's maxrss of the child, os.wait4). A night over
   `--max-minutes` or `--max-rss-gb` is stopped and recorded with the stage it reached.
3. The DuckDB baseline (benchmarks/baseline_sql.py) once, in a subprocess, on the same inputs:
   its steps' seconds, peak RSS, and the ratio engine / baseline.
4. benchmarks/RESULTS.md: the machine, then one section per size (replaced when the size is run
   again); the text outside the generated blocks (e.g. the extrapolation) is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
CACHE_ROOT = Path(tempfile.gettempdir()) / "kyufu-benchmarks"
RUN_DATE = date(2021, 12, 31)
STAGES = ("ingest", "route", "validate", "persons", "entitle", "payees", "checks", "standing", "points", "outputs",
          "publish")
# what each stage works through, from the run record's counts (rows per second = these / seconds)
STAGE_ROWS = {
    "route": ("residents_rows", "accounts_rows", "applications_rows"),
    "validate": ("residents_rows", "accounts_rows", "applications_rows"),
    "persons": ("residents_rows",),
    "entitle": ("residents_rows",),
    "payees": ("households",),
    "checks": ("persons",),
    "standing": ("households",),
    "points": ("transactions_rows",),
    "outputs": ("persons", "households"),
}
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


# ---- child processes and their memory ----------------------------------------------------------------


def _tree(root: int) -> tuple[int, float]:
    """Resident bytes and CPU seconds (user + system, the exited and waited-for children's
    included) of `root` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    cpu: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * PAGE
        cpu[pid] = sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    total, ticks, todo = 0, 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        ticks += cpu.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total, ticks / TICK


def _machine_ticks() -> tuple[int, int]:
    """(iowait, all) jiffies of every CPU since boot (/proc/stat): vmstat's `wa` is their ratio
    over an interval."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return fields[4], sum(fields[:8])  # user nice system idle iowait irq softirq steal


def run_measured(cmd: list[str], *, stage_log: Path | None = None, max_seconds: float = 1e9,
                 max_rss: float = 1e18, stdout: Path | None = None, disk: Path | None = None) -> dict:
    """Run `cmd`, sampling its process tree's RSS; return wall seconds, maxrss of the child (wait4),
    its CPU seconds (user + system, wait4), the sampled tree peak, the peak per stage (when the
    child logs stages) and how it ended. Per stage also the tree's CPU seconds and the share of
    the machine's CPU time spent waiting on the disk (vmstat's `wa`): a stage that keeps the
    cores busy needs less work to go faster, one that waits needs its reads earlier. With
    `disk`, also the peak growth of the used space on that folder's filesystem over the run (sampled
    with the RSS: the night's checkpoints, outputs and state, and anything else writing there)."""
    out = open(stdout, "wb") if stdout else subprocess.DEVNULL
    disk_start = shutil.disk_usage(disk).used if disk else 0
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.PIPE, start_new_session=True)
    peak, disk_peak, per_stage, stopped = 0, 0, {}, None
    stage_cpu: dict[str, float] = {}
    stage_wait: dict[str, list[int]] = {}  # stage → [iowait, all] jiffies of the machine
    cpu_before, ticks_before = 0.0, _machine_ticks()
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        rss, cpu = _tree(proc.pid)
        ticks = _machine_ticks()
        peak = max(peak, rss)
        if disk:
            disk_peak = max(disk_peak, shutil.disk_usage(disk).used - disk_start)
        stage = _current_stage(stage_log)
        if stage:
            per_stage[stage] = max(per_stage.get(stage, 0), rss)
            # what happened since the last sample goes to the stage running now
            stage_cpu[stage] = stage_cpu.get(stage, 0.0) + max(0.0, cpu - cpu_before)
            wait = stage_wait.setdefault(stage, [0, 0])
            wait[0] += ticks[0] - ticks_before[0]
            wait[1] += ticks[1] - ticks_before[1]
        cpu_before, ticks_before = max(cpu_before, cpu), ticks
        elapsed = time.perf_counter() - started
        if stopped is None and (elapsed > max_seconds or rss > max_rss):
            stopped = {"reason": "time" if elapsed > max_seconds else "memory", "stage": stage,
                       "seconds": round(elapsed, 1), "rss_bytes": rss}
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if stdout:
        out.close()
    code = proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: Popen must not wait again
    return {"seconds": round(seconds, 2), "maxrss_bytes": usage.ru_maxrss * 1024, "tree_peak_bytes": peak,
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            "stage_peak_bytes": per_stage, "stage_cpu_seconds": {k: round(v, 2) for k, v in stage_cpu.items()},
            "stage_disk_wait": {k: round(w / t, 4) for k, (w, t) in stage_wait.items() if t},
            "disk_peak_bytes": disk_peak if disk else None, "exit_code": code,
            "stopped": stopped,
            "stderr_tail": stderr[-2000:] if code else ""}


def _current_stage(stage_log: Path | None) -> str | None:
    if stage_log is None or not stage_log.exists():
        return None
    lines = stage_log.read_text().split()
    return lines[-1] if lines else None


def night_child(inputs: Path, state: Path, out: Path, run_date: date, stage_log: Path, shards: int | None) -> None:
    """The night as `python -m engine.cli run` runs it (engine.cli.run_night), with a stage log."""
    sys.path.insert(0, str(ROOT))
    from engine import allocator

    allocator.configure()  # as `kyufu` does, before Polars loads
    from engine.config import load_config
    from pipelines import nightly

    log = open(stage_log, "a", buffering=1)
    report = nightly.run(inputs, state, out, run_date, load_config(None), on_stage=lambda s: log.write(s + "\n"),
                         shards=shards)
    log.write("done\n")
    print(json.dumps({"shards": report.shards, "stage_seconds": report.stage_seconds, "counts": report.counts,
                      "totals": report.totals, "run_dir": str(report.run_dir)}))


# ---- the measurements ------------------------------------------------------------------------------


def cached_inputs(residents: int, seed: int) -> Path | None:
    """The inputs benchmarks/conftest.py caches for (residents, seed), if generated already."""
    sys.path.insert(0, str(ROOT))
    from pipelines.generate import is_generated

    folder = CACHE_ROOT / f"inputs-{residents}-seed{seed}"
    return folder if is_generated(folder, residents, seed) else None


def generate_measured(residents: int, seed: int, out: Path) -> dict:
    code = ("import sys; from pathlib import Path; sys.path.insert(0, '.'); from engine import allocator; "
            "allocator.configure(); from pipelines import generate; "
            f"generate.generate({residents}, {seed}, Path({str(out)!r}), workers=2)")
    result = run_measured([sys.executable, "-c", code])
    if result["exit_code"]:
        raise SystemExit(f"generation failed:\n{result['stderr_tail']}")
    return result


def night_measured(inputs: Path, workdir: Path, run_date: date, max_minutes: float, max_rss_gb: float,
                   shards: int | None = None, keep: bool = False) -> dict:
    folder = workdir / "night"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log = folder / "stages.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--night-child", "--inputs", str(inputs),
           "--state", str(folder / "state"), "--out", str(folder / "out"), "--date", run_date.isoformat(),
           "--stage-log", str(log), *(["--shards", str(shards)] if shards is not None else [])]
    result = run_measured(cmd, stage_log=log, max_seconds=max_minutes * 60, max_rss=max_rss_gb * 2**30,
                          stdout=folder / "report.json", disk=folder)
    if result["exit_code"] == 0:
        report = json.loads((folder / "report.json").read_text())
        timings = json.loads((Path(report["run_dir"]) / "timings.json").read_text())
        run_record = json.loads((Path(report["run_dir"]) / "run.json").read_text())
        result.update(stage_seconds=timings["stage_seconds"], counts=run_record["counts"],
                      shards=report.get("shards", 0), totals=run_record["totals_yen"])
        result["output_bytes"] = sum(p.stat().st_size for p in (folder / "out").rglob("*") if p.is_file())
        result["state_bytes"] = sum(p.stat().st_size for p in (folder / "state").rglob("*") if p.is_file())
        # the inputs as the night recorded them: the bytes its disk check weighed
        result["input_bytes"] = sum(f["bytes"] for entry in run_record["inputs"].values() for f in entry["files"])
        sys.path.insert(0, str(ROOT))
        from engine import diskspace

        result["disk_asked_bytes"] = diskspace.estimate(result["input_bytes"], sharded=result["shards"] > 0)["night"]
    else:
        result["stage_reached"] = _current_stage(log)
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    return result


def baseline_measured(inputs: Path, workdir: Path, run_date: date) -> dict:
    folder = workdir / "baseline"
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(HERE / "baseline_sql.py"), "--inputs", str(inputs), "--date", run_date.isoformat()]
    result = run_measured(cmd, stdout=folder / "report.json")
    if result["exit_code"] == 0:
        result.update(json.loads((folder / "report.json").read_text()))
    return result


def machine() -> dict:
    import duckdb
    import numba
    import polars

    from engine import allocator

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    return {"nproc": os.cpu_count(), "cpu": model, "memory_gib": round(mem_kb / 2**20, 1),
            "python": platform.python_version(), "polars": polars.__version__, "duckdb": duckdb.__version__,
            "numba": numba.__version__, "os": platform.platform(), "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
            "allocator": allocator.setting()}  # what the night's child runs with


# ---- RESULTS.md ------------------------------------------------------------------------------------


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "engine", "pipelines"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + (" (engine/pipelines modified)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _gb(n: float | None) -> str:
    return "–" if not n else f"{n / 2**30:.2f}"


def _rate(rows: float, seconds: float) -> str:
    return "–" if not rows or not seconds else f"{rows / seconds:,.0f}"


def _stage_cpu(done: list[dict], stage: str) -> tuple[str, str, str]:
    """A stage's median CPU seconds, cores busy (CPU seconds / wall seconds) and disk wait, as
    table cells ("–" for nights measured before these were sampled)."""
    pairs = [(r["stage_cpu_seconds"][stage], r["stage_seconds"][stage]) for r in done
             if stage in r.get("stage_cpu_seconds", {}) and r["stage_seconds"].get(stage)]
    waits = [r["stage_disk_wait"][stage] for r in done if stage in r.get("stage_disk_wait", {})]
    if not pairs:
        return "–", "–", "–"
    cpu = statistics.median(c for c, _ in pairs)
    busy = statistics.median(c / s for c, s in pairs)
    wait = f"{statistics.median(waits):.0%}" if waits else "–"
    return f"{cpu:.1f}", f"{busy:.2f}", wait


def size_section(n: int, seed: int, gen: dict | None, nights: list[dict], base: dict) -> str:
    done = [r for r in nights if r["exit_code"] == 0]
    lines = [f"<!-- size:{n} -->", f"## {n:,} residents (seed {seed})", ""]
    pieces = (f" in {done[0]['shards']} shards" if done[0].get("shards") else " in one piece") if done else ""
    lines.append(f"Measured {datetime.now():%Y-%m-%d %H:%M} at commit {_commit()}; run date {RUN_DATE}; {len(done)} of "
                 f"{len(nights)} nights finished{pieces}; medians over the finished nights.")
    lines.append("")
    if gen:
        lines.append(f"Generator (workers=2): {gen['seconds']:.1f} s, peak RSS {_gb(gen['tree_peak_bytes'])} GB "
                     f"(process tree, sampled; largest single process {_gb(gen['maxrss_bytes'])} GB).")
    else:
        lines.append("Generator: inputs reused from the benchmark cache (not timed here; "
                     "rerun with --measure-generator).")
    lines.append("")
    for r in nights:
        if r["stopped"] or r["exit_code"]:
            why = r["stopped"] or {"reason": f"exit code {r['exit_code']}", "stage": r.get("stage_reached")}
            lines.append(f"**A night did not finish**: stopped for {why['reason']} in stage "
                         f"`{why.get('stage') or r.get('stage_reached')}` after {r['seconds']:.0f} s, "
                         f"peak RSS {_gb(r['tree_peak_bytes'])} GB.")
            if r.get("stderr_tail"):
                lines += ["", "```", r["stderr_tail"].strip()[-800:], "```"]
            lines.append("")
    if done:
        counts = done[0]["counts"]
        lines += ["| stage | seconds (median) | runs | rows | rows / s | peak RSS GB | CPU s | cores busy "
                  "| disk wait |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
        for stage in STAGES:
            secs = [r["stage_seconds"].get(stage) for r in done if stage in r["stage_seconds"]]
            if not secs:
                continue
            med = statistics.median(secs)
            rows = sum(counts.get(k, 0) for k in STAGE_ROWS.get(stage, ()))
            peak = statistics.median([r["stage_peak_bytes"].get(stage, 0) for r in done])
            cpu, busy, wait = _stage_cpu(done, stage)
            lines.append(f"| {stage} | {med:.2f} | {' / '.join(f'{s:.2f}' for s in secs)} | "
                         f"{rows:,} | {_rate(rows, med)} | {_gb(peak)} | {cpu} | {busy} | {wait} |")
        night = statistics.median([r["seconds"] for r in done])
        stage_sum = statistics.median([sum(r["stage_seconds"].values()) for r in done])
        peak = statistics.median([r["tree_peak_bytes"] for r in done])
        maxrss = statistics.median([r["maxrss_bytes"] for r in done])
        cpu = [r["cpu_seconds"] for r in done if r.get("cpu_seconds")]
        cpu_cells = f"{statistics.median(cpu):.1f} | {statistics.median(cpu) / night:.2f} | –" if cpu else "– | – | –"
        lines.append(f"| **night** (process wall, incl. start-up and imports) | **{night:.2f}** | "
                     f"{' / '.join(format(r['seconds'], '.2f') for r in done)} | {counts.get('residents_rows', 0):,} | "
                     f"{_rate(counts.get('residents_rows', 0), night)} | **{_gb(peak)}** | {cpu_cells} |")
        if cpu:
            lines += ["", f"CPU of the night (user + system, the kernel's count for the process, wait4): "
                      f"{' / '.join(f'{c:.0f}' for c in cpu)} s, {statistics.median(cpu) / night:.2f} of the "
                      f"{os.cpu_count()} cores busy over the night's wall time. Per stage, the CPU seconds of the "
                      "process tree and the share of the machine's CPU time spent waiting on disk reads and "
                      "writes (`wa` of vmstat) are sampled every 0.2 s and summed while the stage runs."]
        lines += ["", f"Sum of the stages {stage_sum:.2f} s. Peak RSS of the night: {_gb(peak)} GB sampled "
                  f"(process tree), {_gb(maxrss)} GB maxrss (kernel, wait4). Rows: residents "
                  f"{counts.get('residents_rows', 0):,}, accounts {counts.get('accounts_rows', 0):,}, "
                  f"applications {counts.get('applications_rows', 0):,}, households "
                  f"{counts.get('households', 0):,}, transactions {counts.get('transactions_rows', 0):,}; "
                  f"identity pairs compared {counts.get('identity_pairs_compared', 0):,}. Outputs "
                  f"{_gb(done[0].get('output_bytes'))} GB, state {_gb(done[0].get('state_bytes'))} GB.", ""]
        disk = [r["disk_peak_bytes"] for r in done if r.get("disk_peak_bytes") is not None]
        if disk and done[0].get("input_bytes"):
            inputs = done[0]["input_bytes"]
            lines += [f"Peak disk of the night (growth of the used space on the night folder's filesystem, "
                      f"sampled): {' / '.join(_gb(d) + ' GB' for d in disk)}, "
                      f"{statistics.median(disk) / inputs:.2f} bytes per input byte ({_gb(inputs)} GB of input "
                      f"Parquet); the estimate of the check before the night (engine/diskspace.py, with its margin): "
                      f"{_gb(done[0]['disk_asked_bytes'])} GB.", ""]
    if base.get("exit_code") == 0:
        steps = base["step_seconds"]
        lines += ["DuckDB SQL baseline (benchmarks/baseline_sql.py, one run, subprocess): "
                  + ", ".join(f"{k} {v:.2f} s" for k, v in steps.items() if k != "total")
                  + f"; total {steps['total']:.2f} s in steps, {base['seconds']:.2f} s process wall; peak RSS "
                  f"{_gb(base['tree_peak_bytes'])} GB.", ""]
        if done:
            med = {s: statistics.median([r["stage_seconds"].get(s, 0) for r in done]) for s in STAGES}
            night = statistics.median([r["seconds"] for r in done])
            entitle_e = sum(med[k] for k in ("route", "validate", "persons", "entitle", "payees"))
            entitle_b = sum(steps[k] for k in ("residents", "accounts", "applications", "members", "households",
                                               "payees"))
            lines += ["| comparison | engine s | baseline s | engine / baseline |", "|---|---:|---:|---:|",
                      f"| route … payees vs residents … payees | {entitle_e:.2f} | {entitle_b:.2f} | "
                      f"{entitle_e / entitle_b:.2f} |",
                      f"| checks (all of them) vs shared_accounts | {med['checks']:.2f} | "
                      f"{steps['shared_accounts']:.2f} | {med['checks'] / steps['shared_accounts']:.2f} |",
                      f"| points vs points (no refunds, no holds) | {med['points']:.2f} | {steps['points']:.2f} | "
                      f"{med['points'] / steps['points']:.2f} |",
                      f"| whole night vs whole baseline (process wall) | {night:.2f} | {base['seconds']:.2f} | "
                      f"{night / base['seconds']:.2f} |", "",
                      f"Totals: baseline entitled ¥{base['totals']['entitled_yen']:,}, points (no refunds/holds) "
                      f"¥{base['totals']['points_granted_yen']:,}.", ""]
    elif base:
        lines += [f"DuckDB baseline failed (exit {base.get('exit_code')}): {base.get('stderr_tail', '')[-400:]}", ""]
    lines.append(f"<!-- /size:{n} -->")
    return "\n".join(lines)


HEADER = """# Kyufu at national scale: measured nights

Written by `benchmarks/national.py` (see benchmarks/README.md). The machine block and each size's
block are regenerated when the script runs; the rest of this file is kept as written.
"""


def write_results(path: Path, info: dict, n: int, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    mach = ("<!-- machine -->\n## Machine\n\n"
            f"{info['nproc']} cores ({info['cpu']}), {info['memory_gib']} GiB memory; {info['os']}; Python "
            f"{info['python']}, Polars {info['polars']}, DuckDB {info['duckdb']}, numba {info['numba']}; "
            f"Polars' jemalloc `{info['allocator']}`; "
            f"last run {info['date']}.\n<!-- /machine -->")
    if "<!-- machine -->" in text:
        text = re.sub(r"<!-- machine -->.*?<!-- /machine -->", lambda _: mach, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + mach + "\n"
    if "<!-- sizes -->" not in text:
        text = text.rstrip() + "\n\n<!-- sizes -->\n<!-- /sizes -->\n"
    region = re.search(r"<!-- sizes -->(.*?)<!-- /sizes -->", text, flags=re.S)
    blocks = {int(m.group(1)): m.group(0) for m in
              re.finditer(r"<!-- size:(\d+) -->.*?<!-- /size:\1 -->", region.group(1), flags=re.S)}
    blocks[n] = section
    body = "\n\n".join(blocks[k] for k in sorted(blocks))
    text = text[:region.start()] + f"<!-- sizes -->\n{body}\n<!-- /sizes -->" + text[region.end():]
    path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description="A national night at a given size, measured.")
    parser.add_argument("--residents", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "kyufu-national")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--measure-generator", action="store_true",
                        help="generate a fresh input set into WORKDIR to time the generator")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--keep", action="store_true",
                        help="keep the last night's state and outputs in WORKDIR/night (for check_national.py)")
    parser.add_argument("--max-minutes", type=float, default=20.0)
    parser.add_argument("--max-rss-gb", type=float, default=20.0)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--inputs", type=Path,
                        help="an input set made by `kyufu generate` (its manifest gives the size and seed)")
    parser.add_argument("--shards", type=int, help="passed to the night (default: by size)")
    # the child mode (one night in its own process)
    parser.add_argument("--night-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--date", type=date.fromisoformat, default=RUN_DATE, help=argparse.SUPPRESS)
    parser.add_argument("--stage-log", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.night_child:
        night_child(args.inputs, args.state, args.out, args.date, args.stage_log, args.shards)
        return
    if args.inputs and not args.night_child:
        manifest = json.loads((args.inputs / "manifest.json").read_text())
        args.residents, args.seed = manifest["residents"], manifest["seed"]
    if not args.residents:
        parser.error("--residents or --inputs is required")
    n, workdir = args.residents, args.workdir / f"{args.residents}-seed{args.seed}"
    workdir.mkdir(parents=True, exist_ok=True)
    say = lambda msg: print(f"[{datetime.now():%H:%M:%S}] {msg}", flush=True)  # noqa: E731

    gen, inputs = None, args.inputs or cached_inputs(n, args.seed)
    if args.measure_generator or inputs is None:
        inputs = workdir / "inputs"
        say(f"generating {n:,} residents into {inputs}")
        gen = generate_measured(n, args.seed, inputs)
        say(f"generated in {gen['seconds']:.1f} s, peak {_gb(gen['tree_peak_bytes'])} GB")
    nights = []
    for k in range(args.runs):
        say(f"night {k + 1}/{args.runs} on {inputs}")
        result = night_measured(inputs, workdir, RUN_DATE, args.max_minutes, args.max_rss_gb, args.shards,
                                keep=args.keep and k == args.runs - 1)
        say(f"  {result['seconds']:.1f} s, peak {_gb(result['tree_peak_bytes'])} GB, exit {result['exit_code']}, "
            f"stages {result.get('stage_seconds')}, stopped {result['stopped']}")
        nights.append(result)
        if result["exit_code"]:
            break  # a night that does not finish will not finish the second time either
    base = {}
    if not args.no_baseline:
        say("DuckDB baseline")
        base = baseline_measured(inputs, workdir, RUN_DATE)
        say(f"  {base['seconds']:.1f} s, peak {_gb(base['tree_peak_bytes'])} GB, {base.get('step_seconds')}")
    raw = {"residents": n, "seed": args.seed, "generator": gen, "nights": nights, "baseline": base}
    (workdir / "measurements.json").write_text(json.dumps(raw, indent=2, default=str))
    write_results(args.results, machine(), n, size_section(n, args.seed, gen, nights, base))
    say(f"wrote {args.results} (raw figures in {workdir / 'measurements.json'})")


if __name__ == "__main__":
    main()
