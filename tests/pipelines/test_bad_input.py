"""Bad input: a clear error naming the file, column or key; exit code 2; no partial output."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

import tiny
from engine import diskspace, outputs
from engine.cli import app
from engine.errors import is_disk_full
from pipelines import generate, night_steps

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


def test_a_night_that_would_not_fit_on_its_disk_is_refused_before_it_starts(tmp_path: Path, inputs: Path,
                                                                            monkeypatch) -> None:
    config = tmp_path / "lenient.toml"
    config.write_text("[validate]\nmax_reject_ratio = 0.5\n")
    monkeypatch.setattr(diskspace, "FLOOR_BYTES", 0)
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12, 1000))
    result = run_night(tmp_path, inputs, "--config", str(config))
    assert_failed_cleanly(result, tmp_path, "not enough free disk for this night", "0 MB free",
                          f"outputs 0 MB in {tmp_path / 'out'}", f"state 0 MB in {tmp_path / 'state'}",
                          "--skip-disk-check")
    assert not (tmp_path / "state").exists()

    result = run_night(tmp_path, inputs, "--config", str(config), "--skip-disk-check")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "2020-06-30" / "run.json").exists()


def test_the_disk_estimate_adds_up_the_folders_of_each_disk(tmp_path: Path, monkeypatch) -> None:
    tmp_path = tmp_path.resolve()  # the folders are compared as the check resolves them
    folders = {"checkpoints": tmp_path / "spill", "outputs": tmp_path / "out" / "nested", "state": tmp_path / "state"}
    (tmp_path / "spill").mkdir()
    input_bytes = 10 * 10**9  # 10 GB of inputs
    needs = diskspace.estimate(input_bytes)
    assert all(needs[what] > 0 for what in folders)
    # all three on one disk: the night's peak, less than the sum of each folder's own peak
    assert needs["night"] < sum(needs[what] for what in folders)
    assert needs["night"] > needs["checkpoints"]
    assert diskspace.estimate(input_bytes, sharded=False)["night"] > needs["night"]  # keeps its checkpoints
    free = {"value": needs["night"]}
    monkeypatch.setattr(diskspace.shutil, "disk_usage",
                        lambda path: shutil._ntuple_diskusage(10**13, 10**13 - free["value"], free["value"]))
    assert diskspace.shortfalls(input_bytes, folders) == []  # one disk, exactly enough
    free["value"] -= 1
    [line] = diskspace.shortfalls(input_bytes, folders)  # one line for the one disk, naming all three
    assert f"the night needs about {diskspace.size(needs['night'])} (" in line
    for what, folder in folders.items():
        assert f"{what} {diskspace.size(needs[what])} in {folder}" in line
    # the checkpoints on a disk of their own: each disk is checked against the sum of its folders
    monkeypatch.setattr(diskspace, "_device", lambda anchor: 1 if anchor == tmp_path / "spill" else 2)
    spill_free, other_free = needs["checkpoints"], needs["outputs"] + needs["state"]
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(
        10**13, 0, spill_free if Path(path) == tmp_path / "spill" else other_free))
    assert diskspace.shortfalls(input_bytes, folders) == []
    other_free -= 1
    [line] = diskspace.shortfalls(input_bytes, folders)
    assert line.startswith(f"  the disk of {tmp_path}:"), line
    assert "checkpoints" not in line
    assert diskspace.shortfalls(0, folders) == []  # below the floor, never refused


def test_corrupt_transactions_page_names_the_input(tmp_path: Path) -> None:
    # the footer reads (the schema checks pass), a data page does not: the error surfaces while the
    # points step reads the transactions, and names the input, not a scratch folder of the night
    inputs = tmp_path / "inputs"
    generate.generate(residents=2_000, seed=1, out=inputs)
    path = inputs / "transactions" / "part-00000.parquet"
    data = bytearray(path.read_bytes())
    data[200 : len(data) // 2] = b"\xab" * (len(data) // 2 - 200)
    path.write_bytes(bytes(data))
    result = runner.invoke(app, ["run", "--inputs", str(inputs), "--state", str(tmp_path / "state"),
                                 "--out", str(tmp_path / "out"), "--date", "2021-12-31"])
    assert_failed_cleanly(result, tmp_path, "transactions: cannot read", f"{inputs / 'transactions'} as Parquet")
