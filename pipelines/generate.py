"""Generate a synthetic input set: residents, accounts, applications, services, wallets and
transactions (the input contracts of engine/schemas.py), with planted faults and their truth.

Layout of `out`:
    residents/part-NNNNN.parquet, accounts/…, applications/…, wallets/…, transactions/…
    services.parquet, truth/faults.parquet (schemas.TRUTH_FAULTS), manifest.json

Households are generated in chunks, each from its own generator `default_rng([seed, chunk])`,
so memory stays flat and the same arguments give byte-identical files.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl

from engine import schemas
from engine.synth import banking, faults, points, population, tables, vocabulary
from engine.synth.faults import FaultRates

__all__ = ["FaultRates", "GenerateReport", "chunk_datasets", "generate"]

CHUNKED_DATASETS = ("residents", "accounts", "applications", "wallets", "transactions")
DEFAULT_CHUNK_HOUSEHOLDS = 200_000
PARQUET_COMPRESSION = "zstd"


class GenerateReport(NamedTuple):
    rows: dict[str, int]  # per dataset (residents includes planted copies)
    faults: dict[str, int]  # truth rows per fault kind (every kind present, 0 if none)
    chunks: int
    seconds: float


@dataclass(frozen=True)
class ChunkDatasets:
    residents: pl.DataFrame
    accounts: pl.DataFrame
    applications: pl.DataFrame
    wallets: pl.DataFrame
    transactions: pl.DataFrame
    truth: pl.DataFrame


def chunk_residents(residents: int, chunk_households: int) -> list[int]:
    """Residents per chunk: chunks of ≈chunk_households households, the last one smaller."""
    size = max(1, round(chunk_households * tables.MEAN_HOUSEHOLD_SIZE))
    chunks = max(1, math.ceil(residents / size))
    return [min(size, residents - i * size) for i in range(chunks)]


def chunk_datasets(seed: int, chunk_index: int, chunks: int, residents: int, first_key: int,
                   rates: FaultRates, service_is_prepaid: np.ndarray) -> ChunkDatasets:
    """Every dataset's rows for one chunk of households (pure: no I/O)."""
    rng = np.random.default_rng([seed, chunk_index])
    register, households = population.people(rng, residents, first_key, seed)
    planted_faults = faults.household_faults(rng, households, rates)
    planted = faults.planted_register(rng, register, households, planted_faults, seed,
                                      vocabulary.names().given_count)
    accounts = banking.linked_accounts(rng, planted.register, households, planted_faults,
                                       banking.AccountSlots.for_chunk(chunk_index, chunks, applications=False))
    applications = banking.applications(rng, planted.register, households, planted_faults, accounts,
                                        banking.AccountSlots.for_chunk(chunk_index, chunks, applications=True))
    owned = points.wallets(rng, planted.register, households, service_is_prepaid, rates)
    transactions, transaction_truth = points.transactions(rng, owned, rates)
    truth = pl.concat([planted.truth, accounts.truth, applications.truth, owned.truth, transaction_truth])
    return ChunkDatasets(
        residents=population.residents(planted.register, households),
        accounts=accounts.frame,
        applications=applications.frame,
        wallets=owned.frame,
        transactions=transactions,
        truth=truth.select(schemas.TRUTH_FAULTS.schema.names()),
    )


def _clear(out: Path) -> None:
    """Remove the files a previous run of the generator left (only those)."""
    for name in CHUNKED_DATASETS:
        for part in (out / name).glob("part-*.parquet"):
            part.unlink()
    for path in (out / "services.parquet", out / "truth" / "faults.parquet", out / "manifest.json"):
        path.unlink(missing_ok=True)


def generate(residents: int, seed: int, out: Path, rates: FaultRates | None = None,
             chunk_households: int = DEFAULT_CHUNK_HOUSEHOLDS) -> GenerateReport:
    """Write a synthetic input set of `residents` register rows (plus planted copies) to `out`."""
    if residents < 1:
        msg = f"residents must be at least 1, got {residents}"
        raise ValueError(msg)
    rates = rates or FaultRates()
    began = time.perf_counter()
    out = Path(out)
    _clear(out)
    for name in (*CHUNKED_DATASETS, "truth"):
        (out / name).mkdir(parents=True, exist_ok=True)
    services = points.services(seed)
    services.write_parquet(out / "services.parquet", compression=PARQUET_COMPRESSION)
    service_is_prepaid = (services["kind"] == "prepaid").to_numpy()
    sizes = chunk_residents(residents, chunk_households)
    rows: Counter[str] = Counter({"services": services.height})
    truth_parts = []
    for index, size in enumerate(sizes):
        datasets = chunk_datasets(seed, index, len(sizes), size, index * sizes[0], rates, service_is_prepaid)
        for name in CHUNKED_DATASETS:
            frame: pl.DataFrame = getattr(datasets, name)
            frame.write_parquet(out / name / f"part-{index:05d}.parquet", compression=PARQUET_COMPRESSION)
            rows[name] += frame.height
        truth_parts.append(datasets.truth)
    truth = pl.concat(truth_parts).sort("fault", "household_id", "my_number", "application_id",
                                         "wallet_id", "transaction_id", nulls_last=True)
    truth.write_parquet(out / "truth" / "faults.parquet", compression=PARQUET_COMPRESSION)
    rows["truth"] = truth.height
    counts = dict(truth.group_by("fault").len().iter_rows())
    fault_counts = {kind: int(counts.get(kind, 0)) for kind in faults.ALL_FAULT_KINDS}
    manifest = {
        "seed": seed,
        "residents": residents,
        "chunk_households": chunk_households,
        "chunks": len(sizes),
        "basis_date": "2020-04-27",
        "rates": rates.model_dump(),
        "rows": dict(sorted(rows.items())),
        "faults": fault_counts,
        "fault_outcomes": {**schemas.FAULT_KINDS, **faults.POINTS_FAULT_KINDS},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return GenerateReport(rows=dict(sorted(rows.items())), faults=fault_counts, chunks=len(sizes),
                          seconds=time.perf_counter() - began)
