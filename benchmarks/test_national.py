"""national.py's measurements: each stage's CPU seconds (the process tree's, a grandchild's
included) and disk wait go to the stage that ran, and reach the RESULTS table."""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from pathlib import Path

# benchmarks/ is not a package and not on sys.path under pytest's importlib mode
_spec = importlib.util.spec_from_file_location("national", Path(__file__).with_name("national.py"))
national = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(national)

# a fixed amount of work (not of time): about half a second of one core on this machine
BURN = "sum(i * i for i in range(4_000_000))"


def test_each_stage_gets_the_cpu_of_the_processes_that_ran_in_it(tmp_path: Path) -> None:
    log, spent = tmp_path / "stages.log", tmp_path / "spent.json"
    child = textwrap.dedent(f"""
        import json, resource, subprocess, sys, time
        log = open({str(log)!r}, "a", buffering=1)
        log.write("burn\\n")
        own = time.process_time()
        subprocess.run([sys.executable, "-c", {BURN!r}], check=True)  # a grandchild's CPU
        {BURN}
        own = time.process_time() - own
        waited = resource.getrusage(resource.RUSAGE_CHILDREN)
        log.write("rest\\n")
        time.sleep(1.5)
        json.dump({{"own": own, "grandchild": waited.ru_utime + waited.ru_stime}}, open({str(spent)!r}, "w"))
        log.write("done\\n")
    """)
    result = national.run_measured([sys.executable, "-c", child], stage_log=log)
    assert result["exit_code"] == 0, result["stderr_tail"]
    cpu, burnt = result["stage_cpu_seconds"], json.loads(spent.read_text())
    assert burnt["own"] > 0.2 and burnt["grandchild"] > 0.2
    # the burn stage has both processes' CPU (sampled every 0.2 s: within a sample's worth)
    assert cpu["burn"] > burnt["own"] + burnt["grandchild"] - 0.3
    assert cpu.get("rest", 0.0) < 0.25
    assert result["cpu_seconds"] >= cpu["burn"] + cpu.get("rest", 0.0) - 0.05  # wait4 counts them all
    assert set(result["stage_disk_wait"]) <= {"burn", "rest", "done"}
    assert all(0.0 <= share <= 1.0 for share in result["stage_disk_wait"].values())


def _night(stage_seconds: dict, **measured) -> dict:
    return {"exit_code": 0, "stopped": None, "seconds": sum(stage_seconds.values()) + 5, "shards": 3,
            "stage_seconds": stage_seconds, "stage_peak_bytes": {k: 2**30 for k in stage_seconds},
            "tree_peak_bytes": 2**31, "maxrss_bytes": 2**31, "counts": {"residents_rows": 1_000}, **measured}


def test_the_results_table_has_each_stages_cpu_cores_busy_and_disk_wait() -> None:
    nights = [
        _night({"entitle": 100.0, "checks": 10.0}, cpu_seconds=210.0,
               stage_cpu_seconds={"entitle": 190.0, "checks": 9.0}, stage_disk_wait={"entitle": 0.02, "checks": 0.4}),
        _night({"entitle": 120.0, "checks": 10.0}, cpu_seconds=230.0,
               stage_cpu_seconds={"entitle": 200.0, "checks": 11.0}, stage_disk_wait={"entitle": 0.04, "checks": 0.2}),
    ]
    section = national.size_section(1_000, 0, None, nights, {})
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in section.splitlines()
            if line.startswith("| entitle") or line.startswith("| checks")}
    # medians: entitle 195 CPU s, busy (1.9 + 1.667) / 2, wait 3%; checks 10 CPU s, 1.0, 30%
    assert rows["entitle"][-3:] == ["195.0", "1.78", "3% |"]
    assert rows["checks"][-3:] == ["10.0", "1.00", "30% |"]
    assert "210 / 230 s, 1.76 of the" in section  # the median 220 CPU s over the median 125 s wall
    night = next(line for line in section.splitlines() if line.startswith("| **night**"))
    assert night.endswith("| 220.0 | 1.76 | – |")


def test_nights_measured_before_the_cpu_was_sampled_still_make_a_table() -> None:
    section = national.size_section(1_000, 0, None, [_night({"entitle": 100.0})], {})
    entitle = next(line for line in section.splitlines() if line.startswith("| entitle"))
    assert entitle.endswith("| – | – | – |")
    assert next(line for line in section.splitlines() if line.startswith("| **night**")).endswith("| – | – | – |")
    assert "CPU of the night" not in section
