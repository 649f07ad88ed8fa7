"""The allocator setting that `kyufu` gives Polars' jemalloc (engine/allocator.py): set before
Polars loads, read by jemalloc, and an operator's own setting kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    assert "opt.dirty_decay_ms: 30000" in done.stderr
    assert "opt.muzzy_decay_ms: 30000" in done.stderr
    if Path("/sys/kernel/mm/transparent_hugepage/enabled").exists():  # else jemalloc reports "not supported"
        assert 'opt.thp: "default"' in done.stderr  # huge pages as the kernel's policy has them
    # without it, Polars' own setting (what NIGHT replaces)
    default = _python(code.replace("allocator.NIGHT += ',stats_print:true'; assert allocator.configure(); ", ""),
                      _env(**{allocator.VARIABLE: "stats_print:true"}))
    assert "opt.dirty_decay_ms: 500 " in default.stderr


def test_an_operators_setting_is_kept() -> None:
    done = _python(f"import os, engine.cli; print(os.environ['{allocator.VARIABLE}'])",
                   _env(**{allocator.VARIABLE: "dirty_decay_ms:0"}))
    assert done.stdout.strip() == "dirty_decay_ms:0"


def test_polars_own_setting_is_the_one_the_module_knows() -> None:
    # a Polars upgrade that changes its setting must update POLARS_SETTING (an inherited value)
    env = {k: v for k, v in _env().items() if k != "POLARS_THP"}
    done = _python(f"import os, polars; print(os.environ['{allocator.VARIABLE}'])", env)
    assert done.stdout.strip() == allocator.POLARS_SETTING


def test_a_value_polars_set_in_a_parent_process_is_not_an_operators() -> None:
    code = f"import os, engine.cli; print(os.environ['{allocator.VARIABLE}'])"
    inherited = _python(code, _env(**{allocator.VARIABLE: allocator.POLARS_SETTING}))
    assert inherited.stdout.strip() == allocator.NIGHT
    # a parent that ran with an operator's value passes it on behind Polars' own
    passed_on = _python(code, _env(**{allocator.VARIABLE: f"{allocator.POLARS_SETTING},dirty_decay_ms:0"}))
    assert passed_on.stdout.strip() == "dirty_decay_ms:0"


def test_configure_says_when_it_is_too_late(monkeypatch) -> None:
    import polars  # noqa: F401  (loaded in this test process)

    monkeypatch.delenv(allocator.VARIABLE, raising=False)
    assert allocator.configure() is False
