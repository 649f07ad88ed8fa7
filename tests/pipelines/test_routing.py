"""Routing for the national night (pipelines/routing.py): every input row lands in the shard the
rules give it (and only there, but for an account's copies), each shard's rows in row order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.errors import ReconciliationError
from engine.ingest import ROW
from pipelines import routing
from pipelines.routing import COPY, SHARD


def _shard_rows(folders: list[Path]) -> list[pl.DataFrame]:
    return [routing.scan(folder).collect() for folder in folders]


def test_write_routed_writes_each_row_to_its_shard_in_row_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rows = 400_000  # several morsels of the streaming engine
    frame = pl.DataFrame({ROW: np.arange(rows), "value": rng.integers(0, 1_000, rows),
                          "name": pl.Series(rng.integers(0, 50, rows)).cast(pl.String)})
    shard = rng.integers(0, 3, rows).astype(np.int16)  # shard 3 of 4 gets no row
    folders = routing.write_routed(routing.beside(frame.lazy(), SHARD, shard), tmp_path / "routed", 4)
    parts = _shard_rows(folders)
    for k in range(3):
        assert parts[k].equals(frame.filter(pl.Series(shard == k)))
    assert parts[3].height == 0 and parts[3].schema == frame.schema
    assert sum(p.height for p in parts) == rows


def test_a_row_routed_to_no_shard_stops_the_night(tmp_path: Path) -> None:
    frame = pl.LazyFrame({ROW: [0, 1, 2], "value": [5, 6, 7]})
    with pytest.raises(ReconciliationError, match=r"rows routed to none of the 2 shards \(__shard=2\)"):
        routing.write_routed(routing.beside(frame, SHARD, np.array([0, 2, 1], dtype=np.int16)), tmp_path / "r", 2)


def test_accounts_go_to_every_shard_of_their_person_the_first_one_counted(tmp_path: Path) -> None:
    residents = pl.LazyFrame({
        ROW: [0, 1, 2, 3],
        "household_id": [1, 1, 2, 3],
        "municipality_code": ["011002", "011002", "131016", "131016"],
        "is_head": [True, False, True, True],
        "my_number": [100, 200, 200, 300],  # 200 is registered in both shards, first in shard 0
    })
    accounts = pl.LazyFrame({ROW: [0, 1, 2, 3, 4], "my_number": [300, 200, 999, 100, None]})
    applications = pl.LazyFrame({ROW: [0, 1, 2], "application_id": [7, 8, 7], "household_id": [2, 1, 1]})
    municipalities = pl.DataFrame({"municipality_code": ["011002", "131016"], "shard": [0, 1]})
    scanned = {name: (frame, name) for name, frame in
               (("residents", residents), ("accounts", accounts), ("applications", applications))}
    shards = routing.route_inputs(scanned, 2, municipalities, tmp_path)
    got = [{name: shard[name][0].collect() for name in routing.ROUTED} for shard in shards]
    assert got[0]["residents"][ROW].to_list() == [0, 1] and got[1]["residents"][ROW].to_list() == [2, 3]
    # unknown and missing numbers go to shard 0; 200's copy in shard 1 is marked, in row order
    assert got[0]["accounts"].select(ROW, COPY).rows() == [(1, False), (2, False), (3, False), (4, False)]
    assert got[1]["accounts"].select(ROW, COPY).rows() == [(0, False), (1, True)]
    # application 7 goes with its first copy (household 2, shard 1), duplicate and all
    assert got[1]["applications"][ROW].to_list() == [0, 2] and got[0]["applications"][ROW].to_list() == [1]


def test_a_duplicated_transaction_id_goes_with_its_first_copy(tmp_path: Path) -> None:
    people = routing.People(numbers=np.array([100, 200, 300]), keys=np.array([4, 5, 6]))  # shards 0, 1, 0
    wallets = pl.LazyFrame({ROW: [0, 1, 2], "wallet_id": [10, 20, 30], "my_number": [100, 200, 777]})
    transactions = pl.LazyFrame({
        ROW: [0, 1, 2, 3, 4],
        "transaction_id": [1, 2, 1, 3, None],
        "wallet_id": [20, 10, 10, 99, 20],  # id 1 twice: its first copy is in wallet 20's shard (1)
    })
    scanned = {"wallets": (wallets, "w"), "transactions": (transactions, "t"), "services": (None, "s")}
    shards = routing.route_points(scanned, people, 2, tmp_path)
    got = [shard["transactions"][0].collect()[ROW].to_list() for shard in shards]
    assert got == [[1, 3], [0, 2, 4]]  # unknown wallet 99: shard 0
    assert [shard["wallets"][0].collect()[ROW].to_list() for shard in shards] == [[0, 2], [1]]
