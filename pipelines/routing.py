"""Routing for the national night (pipelines/sharded.py): which shard each input row goes to,
and the passes over the whole nation that decide it, on sorted NumPy columns (a few bytes per
resident) rather than hash tables of the nation.

    route_inputs   residents by household → the shard of its municipality; accounts by My
                   Number (the shard of the person's first registration, and a copy to every
                   other shard where the person is registered); applications by household
    person_keys    My Number → person_key for the nation (kept forever), each shard's keys, and
                   the persons of each points shard (person_key % n)
    route_paid     the state's paid persons to every shard where the person is registered
    route_points   wallets by their owner's points shard, transactions by their wallet's

Every copy of a duplicated application, wallet or transaction id goes with its first copy, so
that each shard's duplicate rules see them together. Each input is routed in one streaming
pass (a shard number beside each row, then Polars' partitioned sink), each shard's rows written
in row order; given the run date, route_inputs checks each row in the same pass (the night's
validation rules, over the nation), so that no shard writes its inputs again to check them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from engine import sorted_index, validate
from engine.errors import ReconciliationError
from engine.ingest import ROW
from pipelines import night_steps as steps

SHARD = "__shard"
COPY = "__copy"  # an account row also routed to a shard other than its person's first
ROUTED = ("residents", "accounts", "applications")
POINTS_ROUTED = ("wallets", "transactions")
take = sorted_index.take  # values[indices] on every core (NumPy's gathers run on one)


def column(frame: pl.LazyFrame, expr: pl.Expr) -> np.ndarray:
    """One column of every row, in row order, as a NumPy array (the global passes keep a few of
    these, 1 GB per 125M Int64 values, rather than hash tables of the whole nation)."""
    return frame.select(expr).collect().to_series().to_numpy()


def lookup(sorted_keys: np.ndarray, values: np.ndarray, keys: np.ndarray, default: int) -> np.ndarray:
    """values[i] where sorted_keys[i] == key, else `default` (a sorted-array join, through the
    bucket index of engine/sorted_index.py: a few cache misses a key, not a binary search's ~27)."""
    return sorted_index.values_at(sorted_keys, values, keys, default)


def groups_of(keys: np.ndarray, order_hint: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows ordered by key (stable: rows of one key keep their order); the sorted order, the
    position where each key starts, each row's group number in sorted order, and the keys in
    sorted order."""
    order = sorted_index.stable_argsort(keys) if order_hint is None else order_hint
    ordered = take(keys, order)
    first = np.empty(len(ordered), dtype=bool)
    first[:1] = True
    first[1:] = ordered[1:] != ordered[:-1]
    return order, np.flatnonzero(first), np.cumsum(first) - 1, ordered


def by_flag(flag: np.ndarray) -> np.ndarray:
    """np.argsort(flag, kind="stable") of a boolean array: the rows without the flag, then
    those with it, each in row order (two scans, not a sort)."""
    return np.concatenate([np.flatnonzero(~flag), np.flatnonzero(flag)])


def beside(frame: pl.LazyFrame, name: str, values: np.ndarray) -> pl.LazyFrame:
    """`frame` with `values` (one per row, in row order) as the column `name`: no join."""
    return pl.concat([frame, pl.DataFrame({name: values}).lazy()], how="horizontal")


def write_routed(routed: pl.LazyFrame, folder: Path, n: int, key: str = SHARD) -> list[Path]:
    """Write the rows of `routed` into the folder of their `key` (a shard, 0 to n − 1; a row may
    appear more than once, in different shards), each shard's rows in row order: one streaming
    pass that reads, partitions and writes at once. An empty file for a shard with no rows; a
    row whose key is not one of the n stops the night (no row is left behind)."""
    if folder.exists():
        shutil.rmtree(folder)
    routed.sink_parquet(pl.PartitionBy(folder, key=key, include_key=False),
                        **steps.CHECKPOINT, mkdir=True)
    folders = [folder / f"{key}={k}" for k in range(n)]
    stray = sorted({p.name for p in folder.iterdir()} - {f.name for f in folders})
    if stray:
        msg = f"rows routed to none of the {n} shards ({', '.join(stray[:5])}) in {folder}; nothing was published"
        raise ReconciliationError(msg)
    schema = routed.collect_schema()
    for path in folders:
        if not path.exists() or not any(path.glob("*.parquet")):
            path.mkdir(parents=True, exist_ok=True)
            pl.DataFrame(schema=schema).drop(key).write_parquet(path / "empty.parquet")
    return folders


def scan(folder: Path) -> pl.LazyFrame:
    return pl.scan_parquet(sorted(folder.glob("*.parquet")))


def scan_all(folders: list[Path]) -> pl.LazyFrame:
    """Every shard's rows of one routed input."""
    return pl.scan_parquet([path for folder in folders for path in sorted(folder.glob("*.parquet"))])


def _folder(work: Path, name: str, run_date: date | None) -> Path:
    """Where an input is routed: `validated/` when checked on the way (given the run date)."""
    return work / ("routed" if run_date is None else "validated") / name


def rows_of(frame: pl.LazyFrame) -> int:
    return frame.select(pl.len()).collect().item()


def route_inputs(scanned: dict, n: int, municipalities: pl.DataFrame, work: Path,
                 run_date: date | None = None) -> list[dict]:
    """Residents, accounts and applications split into shards (module doc); each shard's
    `scanned` dict as nightly reads it (ROW and format flags carried).

    With `run_date`, each input is validated as it is routed (validate.checked_residents,
    checked_accounts, checked_applications over the nation, in the same streaming pass), so that
    each shard's validation reads its rows checked instead of writing them once more. The rules
    decide per row what they would decide per shard: the rows a rule compares are routed
    together (the copies of a resident, all the links of a person, the copies of an application
    id, a household's rows and its applications); an account's copies carry its verdict."""
    residents = scanned["residents"][0]
    rows = rows_of(residents)
    # a household goes where its first row (the head first) is registered, as entitle reads it
    households = column(residents, pl.col("household_id").fill_null(-1))
    row_shard = column(residents, pl.col("municipality_code").replace_strict(
        municipalities["municipality_code"], municipalities["shard"], default=0, return_dtype=pl.Int16))
    by_head = by_flag(column(residents, pl.col("is_head").fill_null(False).not_()))
    order, starts, group, _ = groups_of(households, take(by_head, sorted_index.stable_argsort(take(households,
                                                                                                   by_head))))
    del by_head
    home_rows = take(order, starts)
    home_ids, home_shards = take(households, home_rows), take(row_shard, home_rows)
    shard_per_row = np.empty(rows, dtype=np.int16)
    sorted_index.put(shard_per_row, order, take(home_shards, group))
    del order, starts, group, households, row_shard, home_rows
    checked = residents if run_date is None else validate.checked_residents(residents, run_date)
    folders = {"residents": write_routed(beside(checked, SHARD, shard_per_row), _folder(work, "residents", run_date),
                                         n)}
    del checked

    # an account goes to every shard where its person is registered (a person in two households
    # is paid into one account whichever household is released); the copy in the shard of the
    # person's first registration is the one counted and rejected. Unknown numbers: shard 0.
    numbers = column(residents, pl.col("my_number").fill_null(-1))
    order, starts, group, ordered = groups_of(numbers)
    del numbers
    shards = take(shard_per_row, order)
    first_ids, first_shards = take(ordered, starts), take(shards, starts)
    elsewhere = shards != take(first_shards, group)
    copies = pl.DataFrame({"my_number": ordered[elsewhere], SHARD: shards[elsewhere]}).unique()
    del order, starts, group, ordered, shards, elsewhere

    # each account row in its person's first shard, then a copy in each other shard (the row
    # exploded: every shard still reads its rows in row order)
    accounts = scanned["accounts"][0]
    own = lookup(first_ids, first_shards, column(accounts, pl.col("my_number").fill_null(-1)), 0)
    elsewhere = copies.group_by("my_number").agg(pl.col(SHARD).sort().alias("__elsewhere"))
    checked = accounts if run_date is None else validate.checked_accounts(accounts, run_date)
    routed = (
        beside(checked, "__own", own)
        .join(elsewhere.lazy(), on="my_number", how="left", maintain_order="left")
        .with_columns(pl.concat_list("__own", pl.col("__elsewhere").fill_null([])).alias(SHARD))
        .explode(SHARD)
        .with_columns(pl.col(SHARD).cast(pl.Int16), (pl.col(SHARD) != pl.col("__own")).alias(COPY))
        .drop("__own", "__elsewhere")
    )
    del own, checked
    folders["accounts"] = write_routed(routed, _folder(work, "accounts", run_date), n)

    # an application goes to its household's shard; every copy of one application_id with its
    # first copy (the duplicate rule reads them together)
    applications = scanned["applications"][0]
    app_shard = pl.Series(SHARD, lookup(home_ids, home_shards,
                                         column(applications, pl.col("household_id").fill_null(-1)), 0))
    app_shard = applications.select("application_id", ROW).with_columns(app_shard).collect().select(
        pl.col(SHARD).get(pl.col(ROW).arg_min()).over("application_id"))[SHARD].to_numpy()
    if run_date is not None:
        valid = scan_all(folders["residents"]).filter(pl.col("reject_reason").is_null()).select("household_id")
        applications = validate.checked_applications(applications, valid, run_date)
    folders["applications"] = write_routed(beside(applications, SHARD, app_shard),
                                           _folder(work, "applications", run_date), n)
    return [
        {**{name: (scan(folders[name][shard]), scanned[name][1]) for name in ROUTED},
         **{name: scanned[name] for name in scanned if name not in ROUTED and name not in POINTS_ROUTED}}
        for shard in range(n)
    ]


@dataclass
class People:
    """Every valid resident's person: the My Numbers, sorted, and their person_keys (the
    lookup that routes wallets to their owner's points shard); the shard of each person's
    first registration, and (person_key, shard) of the person's registrations in other shards
    (the lookup that routes the state's paid persons: route_paid)."""

    numbers: np.ndarray
    keys: np.ndarray
    shards: np.ndarray
    copies: pl.DataFrame


DIED_NULL = np.iinfo(np.int32).min


def person_keys(known: pl.LazyFrame, valid: list[pl.LazyFrame], n: int, work: Path
                ) -> tuple[pl.DataFrame, list[pl.LazyFrame], list[pl.LazyFrame], People]:
    """nightly.person_keys over the whole nation, in sorted arrays: known numbers keep their
    key, new numbers get the next keys in order of first appearance in the register. Returns
    the persons table, each shard's keys (ROW and person_key of its valid residents, in their
    order), the persons of each points shard (person_key % n: My Number, person_key, died_on
    as on the person's first row) and the sorted people."""
    parts = [frame.select("my_number", ROW, pl.col("died_on").cast(pl.Int32).fill_null(DIED_NULL)).collect()
             for frame in valid]
    sizes = [p.height for p in parts]
    numbers = np.concatenate([p["my_number"].to_numpy() for p in parts])
    rows = np.concatenate([p[ROW].to_numpy() for p in parts])
    died = np.concatenate([p["died_on"].to_numpy() for p in parts])
    del parts
    by_row = sorted_index.stable_argsort(rows)
    order, starts, group, ordered = groups_of(numbers, take(by_row, sorted_index.stable_argsort(take(numbers,
                                                                                                    by_row))))
    del by_row, numbers
    firsts = take(order, starts)
    unique, first_rows, first_died = take(ordered, starts), take(rows, firsts), take(died, firsts)
    shards = take(_row_shards(sizes), firsts)  # the shard of each person's first registration
    del died, firsts, ordered
    known_frame = known.select("my_number", "person_key").sort("my_number").collect()
    known_numbers, known_keys = known_frame["my_number"].to_numpy(), known_frame["person_key"].to_numpy()
    keys = lookup(known_numbers, known_keys, unique, 0)
    new = np.flatnonzero(keys == 0)
    new = take(new, sorted_index.stable_argsort(take(first_rows, new)))
    start = int(known_keys.max()) + 1 if len(known_keys) else 1
    sorted_index.put(keys, new, np.arange(start, start + len(new), dtype=np.int64))
    table = pl.concat([known_frame, pl.DataFrame({"my_number": take(unique, new), "person_key": take(keys, new)})])
    del known_frame, known_numbers, known_keys, new
    key_per_row = np.empty(len(rows), dtype=np.int64)
    sorted_index.put(key_per_row, order, take(keys, group))
    copies = _other_registrations(order, starts, group, keys, shards, sizes)
    del order, starts, group
    # each shard's keys row by row, in the order of its valid residents: entitle sets them
    # beside the residents instead of joining them back by My Number (nightly.keyed_residents)
    folder = work / "keys"
    folder.mkdir(parents=True, exist_ok=True)
    per_shard, offset = [], 0
    for shard, size in enumerate(sizes):
        path = folder / f"{shard}.parquet"
        pl.DataFrame({ROW: rows[offset:offset + size], "person_key": key_per_row[offset:offset + size]}) \
            .write_parquet(path, **steps.CHECKPOINT)
        per_shard.append(pl.scan_parquet(path))
        offset += size
    del key_per_row, rows
    in_order = sorted_index.stable_argsort(first_rows)
    people = pl.DataFrame({
        "my_number": take(unique, in_order), "person_key": take(keys, in_order),
        "died_on": pl.Series(take(first_died, in_order)).replace(DIED_NULL, None).cast(pl.Date),
    })
    folders = write_routed(people.lazy().with_columns((pl.col("person_key") % n).cast(pl.Int16).alias(SHARD)),
                           work / "points_persons", n)
    del people, in_order
    return table, per_shard, [scan(f) for f in folders], People(unique, keys, shards, copies)


def _row_shards(sizes: list[int]) -> np.ndarray:
    """The shard of each row of the shards' rows set one after another (`sizes` rows each)."""
    return np.repeat(np.arange(len(sizes), dtype=np.int16), sizes)


def _several(starts: np.ndarray, rows: int, chunk: int = 1 << 23) -> np.ndarray:
    """Whether each group (starting at `starts`, `rows` rows in all) has more than one row: a
    chunk at a time, without the two temporary Int64 copies of `starts` that np.diff(starts,
    append=rows) makes (2 GB at 125M persons, at the person-key pass's peak)."""
    several = np.empty(len(starts), dtype=bool)
    for lo in range(0, len(starts), chunk):
        hi = min(lo + chunk, len(starts))
        stops = starts[lo + 1:hi + 1] if hi < len(starts) else np.append(starts[lo + 1:hi], rows)
        several[lo:hi] = stops - starts[lo:hi] > 1
    return several


def _other_registrations(order: np.ndarray, starts: np.ndarray, group: np.ndarray, keys: np.ndarray,
                         shards: np.ndarray, sizes: list[int]) -> pl.DataFrame:
    """(person_key, shard) of each person's registrations in shards other than `shards`, that
    of the person's first (rows in `order`, grouped by person from `starts`): only persons with
    several rows (a few in a thousand) are looked at."""
    several = _several(starts, len(order))
    rows = np.flatnonzero(take(several, group))
    of = take(group, rows)
    # the shard of these few rows by their position among the shards' rows (not a shard per row
    # of the nation again, as person_keys needed for every person's first row)
    row_shards = np.searchsorted(np.cumsum(sizes), take(order, rows), side="right").astype(np.int16)
    other = row_shards != take(shards, of)
    return pl.DataFrame({"person_key": take(keys, of[other]), SHARD: row_shards[other]}).unique()


def route_paid(paid: pl.LazyFrame, people: People, n: int, work: Path) -> list[pl.LazyFrame]:
    """The state's paid persons (person_key, household_id, paid_on) of the persons registered
    in each shard tonight, in their order: a person's row goes to every shard where the person
    is registered (entitle reads it there: entitle.without_paid_elsewhere); a person not
    registered tonight concerns no shard. One pass over the nation's paid persons, instead of
    each shard joining all of them (the nation's 125M rows read and hashed once per shard)."""
    wanted = column(paid, pl.col("person_key").fill_null(-1))
    if not len(wanted):
        return [paid] * n
    by_key = sorted_index.stable_argsort(people.keys)
    shard = lookup(take(people.keys, by_key), take(people.shards, by_key), wanted, -1)
    del by_key, wanted
    elsewhere = people.copies.group_by("person_key").agg(pl.col(SHARD).sort().alias("__elsewhere"))
    routed = (
        beside(paid, "__own", shard)
        .filter(pl.col("__own") >= 0)
        .join(elsewhere.lazy(), on="person_key", how="left", maintain_order="left")
        .with_columns(pl.concat_list("__own", pl.col("__elsewhere").fill_null([])).alias(SHARD))
        .explode(SHARD)
        .with_columns(pl.col(SHARD).cast(pl.Int16))
        .drop("__own", "__elsewhere")
    )
    return [scan(folder) for folder in write_routed(routed, work / "paid_persons", n)]


def route_points(scanned: dict, people: People, n: int, work: Path) -> list[dict]:
    """Wallets by their owner's points shard (person_key % n; all rows of one wallet_id with its
    first row), transactions by their wallet's (all rows of one transaction_id with its first).

    The transactions are checked in each shard, not as they are routed: over the nation's 200M
    rows, the refund rule's lookup took 40 s and the routing pass that carried the checks held
    16.3 GB at its peak (benchmarks/RESULTS.md, "Checked as they are routed")."""
    wallets = scanned["wallets"][0]
    owner = lookup(people.numbers, people.keys, column(wallets, pl.col("my_number").fill_null(-1)), -1)
    wallet_shard = np.where(owner >= 0, owner % max(n, 1), 0).astype(np.int16)
    wallet_shard = wallets.select("wallet_id", ROW).with_columns(pl.Series(SHARD, wallet_shard)).collect().select(
        pl.col(SHARD).get(pl.col(ROW).arg_min()).over("wallet_id"), "wallet_id")
    wallet_folders = write_routed(beside(wallets, SHARD, wallet_shard[SHARD].to_numpy()), work / "routed" / "wallets",
                                  n)
    home = wallet_shard.unique("wallet_id", keep="first").sort("wallet_id")
    home_ids, home_shards = home["wallet_id"].fill_null(-1).to_numpy(), home[SHARD].to_numpy()
    del home, wallet_shard
    transactions = scanned["transactions"][0]
    shard = lookup(home_ids, home_shards, column(transactions, pl.col("wallet_id").fill_null(-1)), 0)
    repeated = sorted_index.repeated(column(transactions, pl.col("transaction_id").fill_null(-1)))
    # a duplicated transaction_id: every copy where its first copy goes (the duplicate rule)
    copies = (
        transactions.with_row_index("__at")
        .filter(pl.col("transaction_id").is_in(pl.Series(repeated).implode()))
        .select("__at", "transaction_id", ROW).collect()
    )
    copies = copies.with_columns(pl.Series(SHARD, shard[copies["__at"].to_numpy()])).with_columns(
        pl.col(SHARD).get(pl.col(ROW).arg_min()).over("transaction_id"))
    shard[copies["__at"].to_numpy()] = copies[SHARD].to_numpy()
    del copies, repeated
    transaction_folders = write_routed(beside(transactions, SHARD, shard), work / "routed" / "transactions", n)
    del shard
    return [
        {"wallets": (scan(wallet_folders[s]), scanned["wallets"][1]),
         "transactions": (scan(transaction_folders[s]), scanned["transactions"][1]),
         "services": scanned["services"]}
        for s in range(n)
    ]
