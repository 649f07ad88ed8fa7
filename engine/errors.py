"""Errors the run raises on purpose; `kyufu` prints their message and exits non-zero.

Messages name the file, column or key, the rule and an example value, never a My Number.
"""

from __future__ import annotations

import errno
from pathlib import Path


class EngineError(Exception):
    """Base class for failures the run raises deliberately."""

    exit_code = 2


class ConfigError(EngineError):
    """The run configuration is invalid; nothing has been read yet."""


class InputError(EngineError):
    """An input file is missing, unreadable or does not have the contracted columns and types."""

    @classmethod
    def missing_file(cls, dataset: str, path: Path) -> InputError:
        msg = (
            f"{dataset}: input file not found: {path}\n\n"
            f"Hint: `kyufu run --inputs DIR` expects DIR/{dataset}.parquet or a folder DIR/{dataset}/."
        )
        return cls(msg)

    @classmethod
    def unreadable(cls, dataset: str, path: Path, reason: str) -> InputError:
        first = reason.strip().splitlines()[0] if reason.strip() else "unknown error"
        msg = (
            f"{dataset}: cannot read {path} as Parquet: {first}\n\n"
            "Hint: the file may be truncated or not Parquet; re-export it from the source system."
        )
        return cls(msg)

    @classmethod
    def from_columns(
        cls, dataset: str, path: Path, *, missing: list[str], wrong: list[str]
    ) -> InputError:
        lines = [f"{dataset}: {path} does not match the input contract"]
        if missing:
            lines.append(f"  missing column(s): {missing}")
        lines += [f"  {w}" for w in wrong]
        lines += ["", "Hint: input columns are listed in SPEC.md and engine/schemas.py."]
        return cls("\n".join(lines))


class SchemaContractError(EngineError):
    """A stage produced (or was given) columns that break its contract."""

    @classmethod
    def from_diff(
        cls, name: str, *, missing: list[str], unexpected: list[str], wrong: list[str]
    ) -> SchemaContractError:
        lines = [f"{name}: columns do not match the contract"]
        if missing:
            lines.append(f"  missing: {missing}")
        if unexpected:
            lines.append(f"  unexpected: {unexpected}")
        lines += [f"  {w}" for w in wrong]
        lines += ["", "Hint: contracts live in engine/schemas.py; change both sides together."]
        return cls("\n".join(lines))


class DataQualityError(EngineError):
    """Too many input rows were rejected to pay anyone safely."""


class ReconciliationError(EngineError):
    """Ledger totals disagree with the transfer files or the entitlements."""


class StateError(EngineError):
    """The state folder is inconsistent with the run asked for."""


def is_disk_full(exc: BaseException) -> bool:
    """True for a write that failed because its disk is full: an OSError ENOSPC, or Polars'
    error wrapping one (its message carries the OS's text)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return "No space left on device" in str(exc) or "os error 28" in str(exc)


class DiskFullError(EngineError):
    """A disk the night writes to filled up; nothing was published."""

    @classmethod
    def during(cls, stage: str | None, folders: dict[str, Path]) -> DiskFullError:
        where = "\n".join(f"  {what}: {path}" for what, path in folders.items())
        msg = (
            f"the disk is full (No space left on device) in stage `{stage or 'start'}`; nothing was published "
            f"and the state is as it was. The night writes to:\n{where}\n\n"
            "Hint: free space, or put the checkpoints on another disk with --work-dir. The national night "
            "(125M residents, 6.7 GB of inputs) needs about 34 GB at its peak, the checkpoints of every shard "
            "after entitle; it publishes 13 GB of outputs and commits 7 GB of state (benchmarks/RESULTS.md, Disk)."
        )
        return cls(msg)

    @classmethod
    def before(cls, input_bytes: int, shortfalls: list[str]) -> DiskFullError:
        msg = (
            f"not enough free disk for this night ({input_bytes / 1e6:,.0f} MB of Parquet inputs); nothing was "
            "written and the state is as it was:\n" + "\n".join(shortfalls) + "\n\n"
            "Hint: free space, or put the checkpoints on another disk with --work-dir. The estimate is per "
            "byte of input, measured on nights of 1M to 125M residents (benchmarks/RESULTS.md, Disk); "
            "--skip-disk-check runs the night anyway (a disk that fills up still stops it cleanly)."
        )
        return cls(msg)
