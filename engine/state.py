"""State: what the engine remembers between nights, versioned so that every change is atomic.

The state folder holds numbered versions, each a folder of Parquet tables plus `version.json`
(its parent, what made it, and for a night its date and input fingerprint). The file `CURRENT`
names the head version; replacing it (one atomic rename) is the only commit point. A run that
is killed before the rename leaves the head as it was; versions that never became current are
removed by the next run. Tables that a version does not change are hard links to its parent's.

Tables (SCHEMAS): persons (My Number → person_key: the only place My Numbers are kept),
positions (every household's standing: status and yen), payments (households paid and the file
that carries each payment), paid_persons, files (transfer files and whether they were sent),
holds, decisions (append-only), ledger (every journal line to date), the Mynapoint tables
(points_transactions, points_refunds, points_persons, point_holds), runs (history).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from engine import points
from engine.errors import StateError

# the Parquet a night keeps (state tables and parts, analyst tables): zstd at level 1 writes in
# 70–80% of the time of Polars' default (level 3), for files 1–3% larger (a 10M night's
# members and resolved households, benchmarks/RESULTS.md)
PARQUET = {"compression": "zstd", "compression_level": 1}

CURRENT = "CURRENT"
VERSIONS = "versions"

SCHEMAS: dict[str, pl.Schema] = {
    "persons": pl.Schema({"my_number": pl.Int64, "person_key": pl.Int64}),
    "positions": pl.Schema({
        "household_id": pl.Int64, "status": pl.String, "entitled_yen": pl.Int64,
        "paid_yen": pl.Int64, "denied_yen": pl.Int64, "updated_on": pl.Date,
    }),
    "payments": pl.Schema({
        "household_id": pl.Int64, "amount_yen": pl.Int64, "payee_person_key": pl.Int64,
        "municipality_code": pl.String, "bank_code": pl.String, "branch_code": pl.String,
        "account_type": pl.String, "account_number": pl.String, "payee_name_kana": pl.String,
        "paid_on": pl.Date, "transfer_file": pl.String, "kind": pl.String,
    }),
    "paid_persons": pl.Schema({"person_key": pl.Int64, "household_id": pl.Int64, "paid_on": pl.Date}),
    "files": pl.Schema({
        "transfer_file": pl.String, "produced_on": pl.Date, "transfer_date": pl.Date,
        "municipality_code": pl.String, "records": pl.Int64, "total_yen": pl.Int64,
        "sha256": pl.String, "status": pl.String, "sent_on": pl.Date, "sent_by": pl.String,
        "superseded_by_run": pl.Date,
    }),
    "holds": pl.Schema({
        "hold_id": pl.String, "household_id": pl.Int64, "municipality_code": pl.String,
        "hold_reasons": pl.List(pl.String), "evidence": pl.String, "amount_yen": pl.Int64,
        "first_held_on": pl.Date, "last_seen_on": pl.Date, "status": pl.String,
    }),
    "decisions": pl.Schema({
        "hold_id": pl.String, "decision": pl.String, "decided_by": pl.String,
        "decided_on": pl.Date, "note": pl.String, "source": pl.String,
    }),
    "ledger": pl.Schema({
        "run_date": pl.Date, "entry_id": pl.String, "household_id": pl.Int64, "account": pl.String,
        "debit_yen": pl.Int64, "credit_yen": pl.Int64, "reference": pl.String,
    }),
    # Mynapoint (engine/points.py): processed transactions, applied refunds, each person's points
    "points_transactions": points.POINTS_TRANSACTIONS.schema,
    "points_refunds": points.POINTS_REFUNDS.schema,
    "points_persons": points.POINTS_PERSONS.schema,
    "point_holds": pl.Schema({
        "hold_id": pl.String, "wallet_id": pl.Int64, "person_key": pl.Int64, "service_id": pl.Int64,
        "reasons": pl.List(pl.String), "evidence": pl.String, "first_held_on": pl.Date,
        "last_seen_on": pl.Date, "status": pl.String,
    }),
    # a sharded state (pipelines/sharded.py): the shard of each municipality, fixed on first sight
    "shard_map": pl.Schema({"municipality_code": pl.String, "shard": pl.Int64}),
    "runs": pl.Schema({
        "run_date": pl.Date, "mode": pl.String, "fingerprint": pl.String, "reason": pl.String,
        "version": pl.Int64, "households": pl.Int64, "households_paid": pl.Int64,
        "households_held": pl.Int64, "households_awaiting": pl.Int64, "households_denied": pl.Int64,
        "entitled_yen": pl.Int64, "paid_yen": pl.Int64, "held_yen": pl.Int64, "awaiting_yen": pl.Int64,
        "denied_yen": pl.Int64, "paid_tonight_yen": pl.Int64, "transfer_files": pl.Int64,
    }),
}


SHARDED = ("positions", "payments", "paid_persons", "holds", "ledger", "points_transactions", "points_refunds",
           "points_persons", "point_holds")


def part_name(name: str, shard: int) -> str:
    """A sharded state keeps each household-keyed table as one part per shard: `<name>.s003`."""
    return f"{name}.s{shard:03d}"


def schema_of(name: str) -> pl.Schema:
    return SCHEMAS[name.split(".", 1)[0]]


@dataclass(frozen=True)
class Version:
    """One committed version of the state. In a sharded state (pipelines/sharded.py) the tables
    of SHARDED are kept as parts; `table`/`scan` of such a name read every part."""

    number: int
    path: Path
    info: dict

    def paths(self, name: str) -> list[Path]:
        whole = self.path / f"{name}.parquet"
        if whole.exists():
            return [whole]
        if "." in name or not self.path.exists():
            return []
        return sorted(self.path.glob(f"{name}.s[0-9][0-9][0-9].parquet"))

    def table(self, name: str) -> pl.DataFrame:
        paths = self.paths(name)
        if not paths:
            return schema_of(name).to_frame()
        return pl.read_parquet(paths) if len(paths) > 1 else pl.read_parquet(paths[0])

    def scan(self, name: str) -> pl.LazyFrame:
        paths = self.paths(name)
        if not paths:
            return schema_of(name).to_frame().lazy()
        return pl.scan_parquet(paths)

    @property
    def shards(self) -> int:
        """How many shards the state is kept in (0: one part per table)."""
        return int(self.info.get("shards") or 0)


EMPTY = Version(0, Path("/nonexistent-empty-state"), {"kind": "empty", "parent": None})


class Store:
    """The versioned state folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.versions = folder / VERSIONS

    def head(self) -> Version:
        pointer = self.folder / CURRENT
        if not pointer.exists():
            if self.versions.exists() and any(p.name.isdigit() for p in self.versions.iterdir()):
                msg = (f"state folder {self.folder} has versions but no {CURRENT} file\n\n"
                       "Hint: the state was damaged by hand; restore it from a backup.")
                raise StateError(msg)
            return EMPTY
        return self.version(int(pointer.read_text().strip()))

    def version(self, number: int) -> Version:
        if number == 0:
            return EMPTY
        path = self.versions / f"{number:08d}"
        info_path = path / "version.json"
        if not info_path.exists():
            msg = f"state version {number} is missing from {self.versions}"
            raise StateError(msg)
        return Version(number, path, json.loads(info_path.read_text()))

    def history(self) -> list[Version]:
        """The head and its ancestors, newest first."""
        out, version = [], self.head()
        while version.number:
            out.append(version)
            parent = version.info.get("parent")
            version = self.version(parent) if parent else EMPTY
        return out

    def clean(self) -> None:
        """Remove versions that never became current (left by a killed run)."""
        if not self.versions.exists():
            return
        head = self.head().number
        for path in self.versions.iterdir():
            if path.name.startswith(".") or (path.name.isdigit() and int(path.name) > head):
                shutil.rmtree(path, ignore_errors=True)

    def pending(self) -> Path:
        """A scratch folder inside the state folder for tables written before the commit (same
        filesystem, so they are moved in by rename); removed by `clean` if the run dies."""
        path = self.versions / f".pending-{os.getpid()}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def commit(self, parent: Version, tables: dict[str, pl.DataFrame], info: dict,
               written: dict[str, Path] | None = None) -> Version:
        """Write a new version with `tables` and the already written Parquet files `written`
        (moved in; names may be shard parts), others linked from `parent`; make it the head.

        Raises StateError when the head moved since `parent` was read (another run committed).
        """
        written = written or {}
        if self.head().number != parent.number:
            msg = (f"the state changed while this run was working (head is now version "
                   f"{self.head().number}, the run started from {parent.number}); nothing was committed\n\n"
                   "Hint: run one command at a time against a state folder.")
            raise StateError(msg)
        self.versions.mkdir(parents=True, exist_ok=True)
        number = parent.number + 1
        staging = self.versions / f".{number:08d}.partial-{os.getpid()}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        for name, frame in tables.items():
            schema = schema_of(name)
            if frame.schema != schema:
                frame = frame.select([pl.col(c).cast(t) for c, t in schema.items()])
            frame.write_parquet(staging / f"{name}.parquet", **PARQUET)
        for name, path in written.items():
            os.replace(path, staging / f"{name}.parquet")
        if parent.number:
            for path in parent.path.glob("*.parquet"):
                target = staging / path.name
                if not target.exists():
                    os.link(path, target)
        (staging / "version.json").write_text(
            json.dumps({"shards": parent.shards, **info, "parent": parent.number or None}, indent=2,
                       default=str) + "\n")
        _fsync_dir(staging)
        final = self.versions / f"{number:08d}"
        if final.exists():  # a version left by a run killed after writing it, before committing
            shutil.rmtree(final)
        staging.rename(final)
        pointer = self.folder / f".{CURRENT}.partial-{os.getpid()}"
        pointer.write_text(f"{number}\n")
        with pointer.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(pointer, self.folder / CURRENT)  # the commit point
        _fsync_dir(self.folder)
        return self.version(number)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
