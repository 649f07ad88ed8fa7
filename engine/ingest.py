"""Ingest: the only reader of inputs. DIR/<dataset>.parquet (or DIR/<dataset>/*.parquet) →
LazyFrames conformed to the input contracts of engine/schemas.py, with `row_number`.

Reads Parquet metadata only; rows are read when a later stage materialises. Values that cannot be
cast (a My Number string that is not 12 digits) become null and are flagged for validation.
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from engine.errors import InputError
from engine.schemas import Contract

ROW = "row_number"  # position of the row in its dataset (files in name order), for rejects
CHECKSUM_READERS = 4  # files read at once for their checksums


@dataclass(frozen=True)
class Source:
    """An input dataset as found on disk."""

    dataset: str
    path: Path  # the file, or the folder of parts
    files: tuple[Path, ...]


def find_source(contract: Contract, inputs_dir: Path) -> Source | None:
    """The file or folder holding `contract`'s dataset, or None when absent."""
    single = inputs_dir / f"{contract.name}.parquet"
    folder = inputs_dir / contract.name
    if single.is_file():
        return Source(contract.name, single, (single,))
    if folder.is_dir():
        files = tuple(sorted(folder.rglob("*.parquet")))
        if not files:
            raise InputError.missing_file(contract.name, folder / "*.parquet")
        return Source(contract.name, folder, files)
    if contract.required:
        raise InputError.missing_file(contract.name, single)
    return None


def file_schema(source: Source) -> pl.Schema:
    """The schema of every file of `source`, checked to agree; a clear error for a corrupt file."""
    schema: pl.Schema | None = None
    for path in source.files:
        try:
            pq.ParquetFile(path).metadata  # noqa: B018 - reads and checks the footer
            this = pl.read_parquet_schema(path)
        except Exception as exc:  # pyarrow and polars raise several types for a bad footer
            raise InputError.unreadable(source.dataset, path, str(exc)) from None
        this = pl.Schema(this)
        if schema is None:
            schema = this
        elif any(schema.get(name) != dtype for name, dtype in this.items() if name in schema):
            wrong = [
                f"{name} is {dtype} in {path.name}, {schema[name]} in {source.files[0].name}"
                for name, dtype in this.items()
                if name in schema and schema[name] != dtype
            ]
            raise InputError.from_columns(source.dataset, source.path, missing=[], wrong=wrong)
    assert schema is not None
    return schema


def _conversion(name: str, actual: pl.DataType, expected: pl.DataType) -> pl.Expr:
    col = pl.col(name)
    if actual == pl.String and expected == pl.Int64:
        # 12-digit strings (My Numbers keep leading zeros as text); anything else becomes null
        digits = col.str.strip_chars()
        return pl.when(digits.str.contains(r"^\d{1,12}$")).then(digits.cast(pl.Int64, strict=False))
    if isinstance(actual, pl.List) and isinstance(expected, pl.List):
        inner = actual.inner
        if inner == pl.String:
            return col.list.eval(
                pl.when(pl.element().str.contains(r"^\d{12}$")).then(pl.element().cast(pl.Int64))
                .otherwise(pl.lit(-1, pl.Int64))
            )
        return col.cast(expected)
    return col.cast(expected)


def scan(contract: Contract, inputs_dir: Path) -> tuple[pl.LazyFrame, Source] | None:
    """The dataset as a LazyFrame with the contract's columns (cast where allowed) + row_number.

    Raises InputError naming the file and every missing or mistyped column at once.
    """
    source = find_source(contract, inputs_dir)
    if source is None:
        return None
    actual = file_schema(source)
    missing = [c for c in contract.schema if c not in actual]
    wrong: list[str] = []
    exprs: list[pl.Expr] = []
    format_flags: list[pl.Expr] = []
    for name, expected in contract.schema.items():
        if name not in actual:
            continue
        got = actual[name]
        if got == expected:
            exprs.append(pl.col(name))
        elif got == pl.Null or got in contract.castable.get(name, ()) or (
            isinstance(expected, pl.Datetime) and isinstance(got, pl.Datetime)
        ):
            exprs.append(_conversion(name, got, expected).alias(name))
            if got == pl.String and expected == pl.Int64:
                format_flags.append(
                    (pl.col(name).is_not_null() & ~pl.col(name).str.strip_chars()
                     .str.contains(r"^\d{1,12}$")).alias(f"{name}__bad_format")
                )
        else:
            accepted = [expected, *contract.castable.get(name, ())]
            wrong.append(
                f"column {name!r} is {got}, expected {' or '.join(str(t) for t in accepted)}"
            )
    if missing or wrong:
        raise InputError.from_columns(contract.name, source.path, missing=missing, wrong=wrong)
    paths = [str(p) for p in source.files]
    lf = pl.scan_parquet(paths, extra_columns="ignore", missing_columns="raise")
    lf = lf.select(*exprs, *format_flags).with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))
    return lf, source


class Checksums:
    """SHA-256 and size of every file of the night's inputs, in file order, read by `readers`
    threads in the background while the night runs (reads and hashing release the GIL: from a
    cold page cache one reader waits on the disk most of the time, benchmarks/RESULTS.md,
    "Checksums read in parallel"): `record()` waits for them.

    A night needs them before it starts only to tell a re-run from a night with other inputs
    (pipelines/nightly.py); a new night needs them only for its record, so its first stages run
    while the inputs are read and hashed, instead of after (at 125M the read took 32–114 s of
    otherwise idle cores, benchmarks/RESULTS.md). `stop()` ends the reads early (a night that
    fails); a read error is raised by `record()`."""

    def __init__(self, sources: dict[str, Source], readers: int = CHECKSUM_READERS) -> None:
        self._sources = sources
        self._stopped = threading.Event()
        files = [path for source in sources.values() for path in source.files]
        self._pool = ThreadPoolExecutor(max(1, min(readers, len(files))), thread_name_prefix="kyufu-checksum")
        self._files: dict[str, list[Future]] = {
            name: [self._pool.submit(_checksum, path, self._stopped) for path in source.files]
            for name, source in sources.items()
        }

    def record(self) -> dict[str, dict]:
        """{dataset: {"path", "files": [{"path", "bytes", "sha256"}, …]}}, files in file order."""
        return {name: {"path": str(self._sources[name].path), "files": [f.result() for f in futures]}
                for name, futures in self._files.items()}

    def stop(self) -> None:
        """Stop reading (a file being read stops at its next block) and wait for the readers."""
        self._stopped.set()
        self._pool.shutdown(wait=True, cancel_futures=True)


class _Stopped(Exception):
    """A checksum read ended by Checksums.stop()."""


def _checksum(path: Path, stopped: threading.Event) -> dict:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            if stopped.is_set():
                raise _Stopped(str(path))
            digest.update(block)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}
