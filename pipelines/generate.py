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
import multiprocessing
import os
import resource
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
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
PARQUET_COMPRESSION_LEVEL = 1  # a quarter faster to write than the default level, files ~10% larger


class GenerateReport(NamedTuple):
    rows: dict[str, int]  # per dataset (residents includes planted copies)
    faults: dict[str, int]  # truth rows per fault kind (every kind present, 0 if none)
    chunks: int
    seconds: float  # wall clock
    cpu_seconds: float  # this process and its workers: residents / cpu_seconds is the per-core rate


@dataclass(frozen=True)
class ChunkDatasets:
    residents: pl.DataFrame
    accounts: pl.DataFrame
    applications: pl.DataFrame
    wallets: pl.DataFrame
    transactions: pl.DataFrame
    truth: pl.DataFrame
    identities: pl.DataFrame  # identity_key, person_key, my_number, household_id: to find namesakes across chunks


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
        identities=pl.DataFrame({
            "identity_key": population.identity_keys(planted.register),
            "person_key": planted.register.person_key,
            "my_number": planted.register.my_number,
            "household_id": households.household_id[planted.register.household],
        }),
    )


def write(frame: pl.DataFrame, path: Path) -> None:
    frame.write_parquet(path, compression=PARQUET_COMPRESSION, compression_level=PARQUET_COMPRESSION_LEVEL)


def written_chunk(out: Path, seed: int, chunk_index: int, chunks: int, residents: int, first_key: int,
                  rates: FaultRates, service_is_prepaid: np.ndarray) -> tuple[dict[str, int], ChunkDatasets]:
    """Generate one chunk and write its parts; return its row counts, truth and identities."""
    datasets = chunk_datasets(seed, chunk_index, chunks, residents, first_key, rates, service_is_prepaid)
    rows = {}
    for name in CHUNKED_DATASETS:
        frame: pl.DataFrame = getattr(datasets, name)
        write(frame, out / name / f"part-{chunk_index:05d}.parquet")
        rows[name] = frame.height
    return rows, ChunkDatasets(*(pl.DataFrame() for _ in CHUNKED_DATASETS), truth=datasets.truth,
                               identities=datasets.identities)


def _clear(out: Path) -> None:
    """Remove the files a previous run of the generator left (only those)."""
    for name in CHUNKED_DATASETS:
        for part in (out / name).glob("part-*.parquet"):
            part.unlink()
    for path in (out / "services.parquet", out / "truth" / "faults.parquet", out / "manifest.json"):
        path.unlink(missing_ok=True)


def generate(residents: int, seed: int, out: Path, rates: FaultRates | None = None,
             chunk_households: int = DEFAULT_CHUNK_HOUSEHOLDS, workers: int = 1) -> GenerateReport:
    """Write a synthetic input set of `residents` register rows (plus planted copies) to `out`.

    `workers` > 1 generates chunks in that many processes; the files are the same either way.
    """
    if residents < 1:
        msg = f"residents must be at least 1, got {residents}"
        raise ValueError(msg)
    rates = rates or FaultRates()
    began, began_cpu = time.perf_counter(), time.process_time()
    out = Path(out)
    _clear(out)
    for name in (*CHUNKED_DATASETS, "truth"):
        (out / name).mkdir(parents=True, exist_ok=True)
    services = points.services(seed)
    write(services, out / "services.parquet")
    service_is_prepaid = (services["kind"] == "prepaid").to_numpy()
    sizes = chunk_residents(residents, chunk_households)
    tasks = [(out, seed, index, len(sizes), size, index * sizes[0], rates, service_is_prepaid)
             for index, size in enumerate(sizes)]
    if workers > 1 and len(sizes) > 1:
        # spawn, not fork: a forked child of a process that has used polars' thread pool can hang
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            results = list(pool.map(written_chunk, *zip(*tasks)))
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        child_cpu = children.ru_utime + children.ru_stime
    else:
        results = [written_chunk(*task) for task in tasks]
        child_cpu = 0.0
    rows: Counter[str] = Counter({"services": services.height})
    for chunk_rows, _ in results:
        rows.update(chunk_rows)
    planted = pl.concat([chunk.truth for _, chunk in results])
    namesakes = faults.coincidental_namesakes(pl.concat([chunk.identities for _, chunk in results]))
    truth = pl.concat([planted, namesakes]).sort(
        "fault", "household_id", "my_number", "application_id", "wallet_id", "transaction_id", nulls_last=True)
    write(truth, out / "truth" / "faults.parquet")
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
        "fault_outcomes": {**schemas.FAULT_KINDS, **faults.POINTS_FAULT_KINDS, **faults.COINCIDENCE_FAULT_KINDS},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return GenerateReport(rows=dict(sorted(rows.items())), faults=fault_counts, chunks=len(sizes),
                          seconds=time.perf_counter() - began,
                          cpu_seconds=time.process_time() - began_cpu + child_cpu)


def is_generated(out: Path, residents: int, seed: int) -> bool:
    """True when `out` holds a complete generation for (residents, seed): its manifest, which
    is written last, says so."""
    manifest = out / "manifest.json"
    if not manifest.exists():
        return False
    recorded = json.loads(manifest.read_text(encoding="utf-8"))
    return recorded.get("residents") == residents and recorded.get("seed") == seed
