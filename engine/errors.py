"""Errors the run raises on purpose; `kyufu` prints their message and exits non-zero.

Messages name the file, column or key, the rule and an example value, never a My Number.
"""

from __future__ import annotations

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
