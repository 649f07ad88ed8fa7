"""Run configuration: pydantic models with SPEC.md's defaults, loaded from an optional TOML file.

Every parameter of the rules lives here; a TOML file may set any of them. Unknown keys are
errors (a misspelt key must not silently fall back to a default).
"""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.errors import ConfigError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BenefitConfig(Section):
    """Special Fixed Benefit (research §1.1)."""

    basis_date: date = date(2020, 4, 27)
    amount_per_person_yen: int = Field(default=100_000, gt=0, le=10_000_000)


class MynapointConfig(Section):
    """Mynapoint phase 1 (research §2.2); phase 2 is a change of these values."""

    rate_percent: int = Field(default=25, gt=0, le=100)
    cap_per_person_yen: int = Field(default=5_000, gt=0)
    window_start: date = date(2020, 9, 1)
    window_end: date = date(2021, 12, 31)
    min_refund_cycles: int = Field(
        default=3, ge=2, description="charge→refund→charge cycles on one wallet that hold it (refund cycling)"
    )
    min_refunded_percent: int = Field(
        default=50, ge=1, le=100, description="a transaction refunded at least this much counts as a cycle"
    )

    @model_validator(mode="after")
    def _window_is_ordered(self) -> MynapointConfig:
        if self.window_end < self.window_start:
            msg = f"window_end {self.window_end} is before window_start {self.window_start}"
            raise ValueError(msg)
        return self


class ChecksConfig(Section):
    """Thresholds of the identity and payout checks."""

    shared_account_min_households: int = Field(
        default=2, ge=2, description="an account receiving for this many unrelated households is held"
    )
    holder_name_min_similarity: float = Field(
        default=0.80, ge=0.0, le=1.0, description="Jaro-Winkler of normalised kana below this is held"
    )
    fuzzy_name_min_similarity: float = Field(
        default=0.98, ge=0.5, le=1.0, description="Jaro-Winkler of the whole normalised name"
    )
    fuzzy_part_min_similarity: float = Field(
        default=0.95, ge=0.0, le=1.0, description="and of the family and of the given name, each"
    )


class ValidateConfig(Section):
    max_reject_ratio: float = Field(
        default=0.05, ge=0.0, le=1.0, description="stop the run if more input rows than this are rejected"
    )


class ZenginConfig(Section):
    """The paying side of every 総合振込 file (research §4.2)."""

    remitter_bank_code: str = Field(default="0001", pattern=r"^\d{4}$")
    remitter_branch_code: str = Field(default="001", pattern=r"^\d{3}$")
    remitter_account_type: str = Field(default="1", pattern=r"^[129]$")
    remitter_account_number: str = Field(default="1234567", pattern=r"^\d{7}$")
    max_records_per_file: int = Field(default=999_999, ge=1, le=999_999)

    @model_validator(mode="after")
    def _remitter_is_in_bank_master(self) -> ZenginConfig:
        from engine import reference

        banks = reference.bank_names()
        if self.remitter_bank_code not in banks:
            msg = f"remitter_bank_code {self.remitter_bank_code!r} is not in the zengin-code bank master"
            raise ValueError(msg)
        if (self.remitter_bank_code, self.remitter_branch_code) not in reference.branch_names():
            msg = (
                f"remitter_branch_code {self.remitter_branch_code!r} is not a branch of bank "
                f"{self.remitter_bank_code} in the zengin-code bank master"
            )
            raise ValueError(msg)
        return self


class RunConfig(Section):
    benefit: BenefitConfig = BenefitConfig()
    mynapoint: MynapointConfig = MynapointConfig()
    checks: ChecksConfig = ChecksConfig()
    validate_: ValidateConfig = Field(default=ValidateConfig(), alias="validate")
    zengin: ZenginConfig = ZenginConfig()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("benefit")
    @classmethod
    def _basis_is_plausible(cls, value: BenefitConfig) -> BenefitConfig:
        if value.basis_date.year < 1900:
            msg = f"basis_date {value.basis_date} is before 1900"
            raise ValueError(msg)
        return value


def load_config(path: Path | None) -> RunConfig:
    """Read a TOML run file (or the defaults); raise ConfigError listing every problem at once."""
    if path is None:
        return RunConfig()
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        msg = f"config file not found: {path}"
        raise ConfigError(msg) from None
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: not valid TOML: {exc}"
        raise ConfigError(msg) from None
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            problems.append(f"  {where}: {err['msg']} (got {err.get('input')!r})")
        msg = f"{path}: {exc.error_count()} problem(s)\n" + "\n".join(problems)
        msg += "\n\nHint: every key and its default is in pipelines/config/nightly.toml."
        raise ConfigError(msg) from None


def config_as_dict(cfg: RunConfig) -> dict:
    """The configuration as plain JSON-ready values, for the run record."""
    return cfg.model_dump(mode="json", by_alias=True)
