"""Outputs: the only writer of deliverables: Zengin transfer files, the analyst DuckDB database
and the run record. Every writer writes into the run's staging folder; the pipeline publishes
the folder atomically once the night reconciles.
"""

from __future__ import annotations

import hashlib
import json
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
    "ledger": "double-entry journal of the night",
    "runs": "one row per run: date, counts and yen totals",
}


@dataclass(frozen=True)
class TransferFile:
    path: Path
    municipality_code: str
    transfer_date: date
    records: int
    total_yen: int
    sha256: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def remitter_for(municipality_code: str, cfg: ZenginConfig) -> zengin.Remitter:
    """The paying municipality: its code as 依頼人コード and its kana name as 依頼人名."""
    row = reference.municipalities().filter(pl.col("municipality_code") == municipality_code)
    name = row["prefecture_kana"][0] + row["city_kana"][0] if row.height else municipality_code
    return zengin.Remitter(
        code=municipality_code.rjust(10, "0"),
        name_kana=kana.normalize_kana(name)[:40],
        bank_code=cfg.remitter_bank_code,
        bank_name_kana=reference.bank_names()[cfg.remitter_bank_code],
        branch_code=cfg.remitter_branch_code,
        branch_name_kana=reference.branch_names()[(cfg.remitter_bank_code, cfg.remitter_branch_code)],
        account_type=cfg.remitter_account_type,
        account_number=cfg.remitter_account_number,
    )


def transfer_file_name(municipality_code: str, transfer_date: date, part: int) -> str:
    return f"zengin/{transfer_date:%Y%m%d}/{municipality_code}-{part:03d}.txt"


def write_transfer_files(
    payouts: pl.DataFrame, out_dir: Path, transfer_date: date, cfg: ZenginConfig
) -> list[TransferFile]:
    """One 総合振込 file per municipality and transfer date (split into parts of at most
    `max_records_per_file` records); `payouts` carries `transfer_file` naming each row's file."""
    transfers = (
        payouts.join(reference.banks(), on="bank_code", how="left")
        .join(reference.branches(), on=["bank_code", "branch_code"], how="left")
        .with_columns(
            customer_code_1=pl.col("household_id"),  # 顧客コード1: the household, for the bank's returns
            customer_code_2=pl.lit(None, pl.Int64),
        )
    )
    written = []
    for (name,), rows in transfers.sort("transfer_file", "household_id").group_by(
        "transfer_file", maintain_order=True
    ):
        municipality = rows["municipality_code"][0]
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = zengin.transfer_file_bytes(remitter_for(municipality, cfg), transfer_date, rows)
        path.write_bytes(data)
        written.append(
            TransferFile(path, municipality, transfer_date, rows.height, int(rows["amount_yen"].sum()),
                         hashlib.sha256(data).hexdigest())
        )
    return written


def write_duckdb(path: Path, tables: dict[str, Path]) -> None:
    """Load each Parquet checkpoint into a table of the same name (names come only from
    ANALYST_TABLES, never from input)."""
    unknown = sorted(set(tables) - set(ANALYST_TABLES))
    if unknown:
        msg = f"not analyst tables: {unknown}"
        raise ValueError(msg)
    con = duckdb.connect(str(path))
    try:
        for name, parquet in tables.items():
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM read_parquet(?)", [str(parquet)])
            con.execute(f"COMMENT ON TABLE {name} IS '{ANALYST_TABLES[name]}'")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def write_run_record(path: Path, record: dict) -> None:
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
