"""Outputs: the only writer of deliverables: Zengin transfer files, the analyst DuckDB database
and the run record. Every writer writes into the run's staging folder; the pipeline publishes
the folder atomically once the night reconciles.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import json
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from engine import kana, reference, zengin
from engine.config import ZenginConfig

# analyst tables: name -> description (the README documents them); no My Number in any of them
ANALYST_TABLES = {
    "payouts": "households paid tonight: amount, account, transfer file",
    "holds": "households held for review: reasons, evidence, amount",
    "awaiting": "households with no account yet: amount owed",
    "households": "every household: status and amounts (paid/held/awaiting/not_payable)",
    "persons": "every valid resident by surrogate person_key: eligibility and household status",
    "rejects": "rejected input rows: dataset, row number, reason",
    "ledger": "double-entry journal: every line to date, by run date",
    "runs": "one row per run: date, mode, fingerprint, counts and yen totals",
    "files": "every transfer file produced: produced, sent or superseded",
    "decisions": "every operator decision on a hold (append-only)",
    "points": "Mynapoint: every grant (+) and clawback (−) of the night, per transaction",
    "point_settlements": "Mynapoint: per provider and wallet, the points to grant or claw back tonight",
    "point_holds": "Mynapoint: wallets held for review (shared wallet, second wallet, refund cycling)",
    "points_ignored": "Mynapoint: transactions that earn nothing tonight, by service and reason",
}


@dataclass(frozen=True)
class TransferFile:
    path: Path
    municipality_code: str
    transfer_date: date
    records: int
    total_yen: int
    sha256: str


def sha256_of(path: Path | list[Path]) -> str:
    """SHA-256 of a file; of a table kept in parts, the SHA-256 of its parts' digests in order."""
    if isinstance(path, list):
        return hashlib.sha256("".join(sha256_of(p) for p in path).encode()).hexdigest()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


class Digests:
    """sha256_of each file given to `add`, hashed by a background thread while the night goes
    on, for the run record. A national night's analyst parts (5.6 GB) were hashed at its end,
    read back from disk once its later writes had pushed them out of the page cache; hashed as
    each shard writes them, they are read from memory, beside the next shard's work. A file
    keeps its digest when `move` moves it (place_analyst_parquet); a file not added is hashed
    when asked for. Files must not change once added."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="kyufu-digest")
        self._hashed: dict[Path, Future] = {}

    def add(self, paths: Iterable[Path]) -> None:
        for path in paths:
            self._hashed[Path(path)] = self._pool.submit(sha256_of, Path(path))

    def move(self, source: Path, target: Path) -> None:
        """shutil.move(source, target), once the source is hashed, its digest kept for the target."""
        hashed = self._hashed.pop(Path(source), None)
        if hashed is not None:
            hashed.result()  # read before it moves
            self._hashed[Path(target)] = hashed
        shutil.move(source, target)

    def of(self, path: Path | list[Path]) -> str:
        """sha256_of(path)."""
        if isinstance(path, list):
            return hashlib.sha256("".join(self.of(p) for p in path).encode()).hexdigest()
        hashed = self._hashed.get(Path(path))
        return hashed.result() if hashed is not None else sha256_of(path)

    def stop(self) -> None:
        """Drop the files not hashed yet and wait for the one being hashed (a night that fails)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def remitters(municipality_codes: list[str], cfg: ZenginConfig) -> dict[str, zengin.Remitter]:
    """The paying municipality of each file: its code as 依頼人コード, its kana name as 依頼人名."""
    names = dict(
        reference.municipalities()
        .filter(pl.col("municipality_code").is_in(pl.Series(municipality_codes, dtype=pl.String).implode()))
        .select("municipality_code", pl.col("prefecture_kana") + pl.col("city_kana"))
        .iter_rows()
    )
    bank_name = reference.bank_names()[cfg.remitter_bank_code]
    branch_name = reference.branch_names()[(cfg.remitter_bank_code, cfg.remitter_branch_code)]
    return {
        code: zengin.Remitter(
            code=code.rjust(10, "0"),
            name_kana=kana.normalize_kana(names.get(code, code))[:40],
            bank_code=cfg.remitter_bank_code,
            bank_name_kana=bank_name,
            branch_code=cfg.remitter_branch_code,
            branch_name_kana=branch_name,
            account_type=cfg.remitter_account_type,
            account_number=cfg.remitter_account_number,
        )
        for code in municipality_codes
    }


def write_transfer_files(
    payouts: pl.DataFrame, out_dir: Path, transfer_date: date, cfg: ZenginConfig
) -> list[TransferFile]:
    """One 総合振込 file per municipality and transfer date (split into parts of at most
    `max_records_per_file` records); `payouts` carries `transfer_file` naming each row's file.

    The night's data records are checked and written as cp932 bytes at once, by the record
    kernel (zengin.record_bytes); each file is then its header, its rows of those bytes, its
    trailer and the end record.
    """
    names = payouts["transfer_file"].unique().sort()
    # by file, then household: the files' ranks sort as integers (half the time of the strings)
    file_rank = pl.col("transfer_file").replace_strict(names, pl.int_range(names.len(), dtype=pl.UInt32, eager=True))
    transfers = (
        payouts.join(reference.banks(), on="bank_code", how="left")
        .join(reference.branches(), on=["bank_code", "branch_code"], how="left")
        .with_columns(
            customer_code_1=pl.col("household_id"),  # 顧客コード1: the household, for the bank's returns
            customer_code_2=pl.lit(None, pl.Int64),
        )
        .sort(file_rank, "household_id")
    )
    records = zengin.record_bytes(transfers)
    files = (  # each file's rows are consecutive (sorted by file)
        transfers.group_by("transfer_file", maintain_order=True)
        .agg(
            pl.col("municipality_code").first(),
            pl.len().alias("records"),
            pl.col("amount_yen").sum().alias("total_yen"),
        )
        .with_columns(start=pl.col("records").cum_sum() - pl.col("records"))
    )
    payers = remitters(files["municipality_code"].unique().to_list(), cfg)

    def written(name: str, municipality: str, count: int, total: int, start: int) -> TransferFile:
        data = zengin.assembled_file(payers[municipality], transfer_date, records[start:start + count], int(total))
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return TransferFile(path, municipality, transfer_date, count, int(total), hashlib.sha256(data).hexdigest())

    # hashing and writing release the GIL: a file per core at a time
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        return list(pool.map(lambda row: written(*row), files.iter_rows()))


def write_duckdb(path: Path, tables: dict[str, Path | list[Path]]) -> None:
    """Load each Parquet checkpoint (or its parts, in order) into a table of the same name
    (names come only from ANALYST_TABLES, never from input)."""
    unknown = sorted(set(tables) - set(ANALYST_TABLES))
    if unknown:
        msg = f"not analyst tables: {unknown}"
        raise ValueError(msg)
    con = duckdb.connect(str(path))
    try:
        for name, parquet in tables.items():
            source = [str(p) for p in parquet] if isinstance(parquet, list) else str(parquet)
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM read_parquet(?)", [source])
            con.execute(f"COMMENT ON TABLE {name} IS '{ANALYST_TABLES[name]}'")
        con.execute("CHECKPOINT")
    finally:
        con.close()


ANALYST_FOLDER = "analyst"


def place_analyst_parquet(night_dir: Path, tables: dict[str, Path | list[Path]],
                          digests: Digests | None = None) -> dict[str, list[Path]]:
    """Move each analyst table's Parquet (or its parts) into NIGHT/analyst/<table>/part-NNN.parquet,
    for a database of views over them (write_duckdb_views): a national night's tables hold
    hundreds of millions of rows, and copying them into the database file would take longer
    than computing them. The `digests` of the files move with them."""
    placed = {}
    for name, parquet in tables.items():
        folder = night_dir / ANALYST_FOLDER / name
        folder.mkdir(parents=True, exist_ok=True)
        parts = parquet if isinstance(parquet, list) else [parquet]
        placed[name] = []
        for i, path in enumerate(parts):
            target = folder / f"part-{i:03d}.parquet"
            (digests.move if digests is not None else shutil.move)(path, target)
            placed[name].append(target)
    return placed


def write_duckdb_views(night_dir: Path) -> Path:
    """NIGHT/analyst.duckdb with one view per table of NIGHT/analyst/ (absolute paths: written
    once the night is published in its place; `kyufu` writes it again if it is missing)."""
    path = night_dir / "analyst.duckdb"
    partial = night_dir / ".analyst.duckdb.partial"
    partial.unlink(missing_ok=True)
    con = duckdb.connect(str(partial))
    try:
        for folder in sorted((night_dir / ANALYST_FOLDER).iterdir()):
            name = folder.name
            if name not in ANALYST_TABLES:
                msg = f"not an analyst table: {folder}"
                raise ValueError(msg)
            pattern = str((folder / "*.parquet").resolve()).replace("'", "''")
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet('{pattern}')")
            con.execute(f"COMMENT ON VIEW {name} IS '{ANALYST_TABLES[name]}'")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    os.replace(partial, path)
    return path


def write_run_record(path: Path, record: dict) -> None:
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
