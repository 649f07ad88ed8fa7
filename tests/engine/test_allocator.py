"""The allocator setting that `kyufu` gives Polars' jemalloc (engine/allocator.py): set before
Polars loads, read by jemalloc, and an operator's own setting kept."""

from __future__ import annotations

import os
import subprocess
import sys

from engine import allocator


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          check=True)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != allocator.VARIABLE}
    return {**env, **extra}


def test_the_kyufu_command_sets_the_allocator_before_polars_is_loaded() -> None:
    done = _python("import sys, os, engine.cli; "
                   f"print(os.environ['{allocator.VARIABLE}']); print('polars' in sys.modules)", _env())
    conf, polars_loaded = done.stdout.split()
    assert conf == allocator.NIGHT
    assert polars_loaded == "False"  # the CLI module loads Polars lazily, after the setting


def test_polars_jemalloc_reads_the_setting() -> None:
    # jemalloc prints its options at exit with stats_print; the decay it reports is NIGHT's
    code = ("from engine import allocator; allocator.NIGHT += ',stats_print:true'; "
            "assert allocator.configure(); import polars as pl; pl.DataFrame({'a': [1, 2]}).sum()")
    done = _python(code, _env())
    assert "opt.dirty_decay_ms: 5000" in done.stderr
    assert "opt.muzzy_decay_ms: 5000" in done.stderr
    # without it, Polars' own setting (what NIGHT replaces)
    default = _python(code.replace("allocator.NIGHT += ',stats_print:true'; assert allocator.configure(); ", ""),
                      _env(**{allocator.VARIABLE: "stats_print:true"}))
    assert "opt.dirty_decay_ms: 500 " in default.stderr


def test_an_operators_setting_is_kept() -> None:
    done = _python(f"import os, engine.cli; print(os.environ['{allocator.VARIABLE}'])",
                   _env(**{allocator.VARIABLE: "dirty_decay_ms:0"}))
    assert done.stdout.strip() == "dirty_decay_ms:0"


def test_configure_says_when_it_is_too_late(monkeypatch) -> None:
    import polars  # noqa: F401  (loaded in this test process)

    monkeypatch.delenv(allocator.VARIABLE, raising=False)
    assert allocator.configure() is False
