"""Bad input: a clear error naming the file, column or key; exit code 2; no partial output."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

import tiny
from engine import outputs
from engine.cli import app
from engine.errors import is_disk_full
from pipelines import night_steps

runner = CliRunner()


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    return tiny.write_tiny(tmp_path / "inputs")


def run_night(tmp_path: Path, inputs: Path, *extra: str):
    result = runner.invoke(app, ["run", "--inputs", str(inputs), "--state", str(tmp_path / "state"),
                                 "--out", str(tmp_path / "out"), "--date", "2020-06-30", *extra])
    return result


def assert_failed_cleanly(result, tmp_path: Path, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    text = " ".join(result.output.split())
    for needle in needles:
        assert needle in text, text
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").iterdir())


def test_missing_column(tmp_path: Path, inputs: Path) -> None:
    path = inputs / "residents.parquet"
    pl.read_parquet(path).drop("birth_date").write_parquet(path)
    result = run_night(tmp_path, inputs)
    assert_failed_cleanly(result, tmp_path, "residents", str(path), "missing column(s): ['birth_date']")


def test_wrong_type(tmp_path: Path, inputs: Path) -> None:
    path = inputs / "accounts.parquet"
    pl.read_parquet(path).with_columns(pl.col("linked_on").cast(pl.String)).write_parquet(path)
    result = run_night(tmp_path, inputs)
    assert_failed_cleanly(result, tmp_path, "accounts", str(path), "column 'linked_on' is String, expected Date")


def test_corrupt_parquet(tmp_path: Path, inputs: Path) -> None:
    path = inputs / "applications.parquet"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    result = run_night(tmp_path, inputs)
    assert_failed_cleanly(result, tmp_path, "applications", "cannot read", str(path))


def test_missing_input_file(tmp_path: Path, inputs: Path) -> None:
    (inputs / "accounts.parquet").unlink()
    result = run_night(tmp_path, inputs)
    assert_failed_cleanly(result, tmp_path, "accounts: input file not found")


def test_unknown_bank_code_beyond_the_reject_ratio(tmp_path: Path, inputs: Path) -> None:
    # one unknown bank code in 12 accounts is 8% of the file, above the default 5%
    result = run_night(tmp_path, inputs)
    assert_failed_cleanly(result, tmp_path, "accounts", str(inputs / "accounts.parquet"),
                          "bank_unknown", "row 10: bank_code 9998")


def test_bad_config_value(tmp_path: Path, inputs: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[benefit]\namount_per_person_yen = -5\n[zengin]\nremitter_bank_code = '9998'\n"
                      "[checks]\nholder_name_min_similarty = 0.9\n")
    result = run_night(tmp_path, inputs, "--config", str(config))
    assert_failed_cleanly(result, tmp_path, str(config), "3 problem(s)", "benefit.amount_per_person_yen",
                          "zengin", "9998", "checks.holder_name_min_similarty")


def test_bad_date(tmp_path: Path, inputs: Path) -> None:
    result = runner.invoke(app, ["run", "--inputs", str(inputs), "--state", str(tmp_path / "s"),
                                 "--out", str(tmp_path / "o"), "--date", "2020-13-01"])
    assert result.exit_code == 2
    assert "YYYY-MM-DD" in result.output


def test_a_failed_night_leaves_the_previous_night_and_state_untouched(tmp_path: Path, inputs: Path) -> None:
    config = tmp_path / "lenient.toml"
    config.write_text("[validate]\nmax_reject_ratio = 0.5\n")
    assert run_night(tmp_path, inputs, "--config", str(config)).exit_code == 0
    before = {p: p.read_bytes() for p in sorted((tmp_path / "out").rglob("*")) if p.is_file()}
    state_before = {p: p.read_bytes() for p in sorted((tmp_path / "state").rglob("*")) if p.is_file()}
    path = inputs / "residents.parquet"
    path.write_bytes(path.read_bytes()[:100])
    result = run_night(tmp_path, inputs, "--config", str(config))
    assert result.exit_code == 2
    after = {p: p.read_bytes() for p in sorted((tmp_path / "out").rglob("*")) if p.is_file()}
    assert after == before
    assert {p: p.read_bytes() for p in sorted((tmp_path / "state").rglob("*")) if p.is_file()} == state_before
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["2020-06-30"]
    shutil.rmtree(tmp_path / "out")


def test_a_full_disk_stops_the_night_with_a_clear_error(tmp_path: Path, inputs: Path, monkeypatch) -> None:
    config = tmp_path / "lenient.toml"
    config.write_text("[validate]\nmax_reject_ratio = 0.5\n")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs, "write_transfer_files", no_space)
    result = run_night(tmp_path, inputs, "--config", str(config), "--work-dir", str(tmp_path / "spill"))
    assert_failed_cleanly(result, tmp_path, "the disk is full (No space left on device) in stage `standing`",
                          "nothing was published", f"checkpoints: {tmp_path / 'spill'}", "--work-dir")
    assert not any((tmp_path / "spill").iterdir())


def test_a_full_disk_while_writing_a_checkpoint_is_not_called_a_bad_input(tmp_path: Path) -> None:
    polars_says = pl.exceptions.ComputeError(
        "parquet: File out of specification: underlying IO error: No space left on device (os error 28)")

    class Full(pl.LazyFrame):
        def sink_parquet(self, *args, **kwargs):
            raise polars_says

    frame = Full({"a": [1]})
    with pytest.raises(pl.exceptions.ComputeError) as raised:
        night_steps.sink(frame, tmp_path / "x.parquet", "residents")
    assert is_disk_full(raised.value)
    assert not is_disk_full(pl.exceptions.ComputeError("parquet: invalid thrift"))
