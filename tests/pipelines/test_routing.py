"""Routing for the national night (pipelines/routing.py): every input row lands in the shard the
rules give it (and only there, but for an account's copies), each shard's rows in row order;
rows checked as they are routed get the verdicts that checking each shard gives them."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine import validate
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
    people = routing.People(numbers=np.array([100, 200, 300]), keys=np.array([4, 5, 6]),  # shards 0, 1, 0
                            shards=np.zeros(3, dtype=np.int16), copies=pl.DataFrame())
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


@pytest.mark.parametrize("seed", [0, 1])
def test_paid_persons_go_to_every_shard_where_their_person_is_registered(tmp_path: Path, seed: int) -> None:
    # a nation of 3 shards; some persons registered twice (in one shard or two), some paid
    # persons no longer registered; each shard's routed rows are the paid persons of its
    # registered persons, in their order: the semi-join that each shard made before
    rng = np.random.default_rng(seed)
    numbers = rng.choice(np.arange(10**6, 2 * 10**6), 30_000, replace=False)
    again = rng.choice(numbers, 600, replace=False)
    valid = [pl.LazyFrame({"my_number": part, ROW: np.arange(len(part)) * 3 + k, "died_on": [None] * len(part)},
                          schema_overrides={"died_on": pl.Date})
             for k, part in enumerate(np.array_split(np.concatenate([numbers, again]), 3))]
    known = pl.LazyFrame({"my_number": numbers[:20_000], "person_key": rng.permutation(20_000) + 1})
    _, per_shard, _, people = routing.person_keys(known, valid, 3, tmp_path)
    paid = pl.DataFrame({
        "person_key": rng.choice(np.arange(1, 40_000), 15_000, replace=False),  # keys up to 30,000 registered
        "household_id": rng.integers(0, 10**6, 15_000), "paid_on": [date(2020, 6, 30)] * 15_000,
    })
    routed = routing.route_paid(paid.lazy(), people, 3, tmp_path)
    several = 0
    for k in range(3):
        keys = per_shard[k].select("person_key").collect()
        assert routed[k].collect().equals(paid.join(keys, on="person_key", how="semi", maintain_order="left"))
        several += routed[k].collect().join(per_shard[(k + 1) % 3].collect(), on="person_key", how="semi").height
    assert several > 0  # some paid persons are registered in two shards, and go to both
    assert not any(frame.collect().height for frame in routing.route_paid(paid.clear().lazy(), people, 3, tmp_path))


# ---- checked as they are routed ------------------------------------------------------------------

RUN = date(2021, 12, 31)


def _planted(generated: Path, out: Path) -> Path:
    """The generated inputs with the rows that the rules comparing rows reject: copies of
    residents, several links of one person (older and newer), an invalid bank, copies of an
    application id in another household, applications of unknown households."""
    rng = np.random.default_rng(11)
    r, a, p = (pl.read_parquet(generated / name) for name in ("residents", "accounts", "applications"))
    pick = lambda frame, k: frame.sample(k, seed=int(rng.integers(1 << 30)))  # noqa: E731
    days = lambda k: pl.duration(days=pl.Series(rng.integers(-400, 400, k)))  # noqa: E731
    planted = {
        "residents": pl.concat([r, pick(r, 40), pick(r, 40).with_columns(pl.col("given_name_kana") + "ｱ")]),
        "accounts": pl.concat([a, pick(a, 300).with_columns(pl.col("linked_on") + days(300)),
                               pick(a, 40).with_columns(pl.lit("9998").alias("bank_code"))]),
        "applications": pl.concat([p, pick(p, 40).with_columns(pick(p, 40)["household_id"]),
                                   pick(p, 20).with_columns(pl.col("application_id") + 10**9,
                                                            pl.col("household_id") + 10**9)]),
    }
    for name, frame in planted.items():
        (out / name).mkdir(parents=True)
        frame.sample(fraction=1.0, shuffle=True, seed=5).write_parquet(out / name / "part-00000.parquet")
    for name in ("wallets", "transactions"):
        (out / name).mkdir(parents=True)
        for path in (generated / name).glob("*.parquet"):
            (out / name / path.name).write_bytes(path.read_bytes())
    for path in generated.glob("*.parquet"):
        (out / path.name).write_bytes(path.read_bytes())
    return out


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 23])
def test_several_marks_the_groups_of_more_than_one_row_in_any_chunking(chunk: int) -> None:
    rng = np.random.default_rng(chunk)
    sizes = rng.integers(1, 4, 1_000)  # groups of 1-3 rows; chunk edges fall inside and between them
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rows = int(sizes.sum())
    several = routing._several(starts, rows, chunk)
    assert np.array_equal(several, np.diff(starts, append=rows) > 1)
    assert np.array_equal(several, sizes > 1)
    assert routing._several(np.zeros(0, dtype=np.int64), 0, chunk).shape == (0,)


def test_a_registration_on_the_first_row_of_a_shard_is_a_copy_in_that_shard() -> None:
    # shards of 2 rows each; person 10 on row 0 (shard 0) and row 2, the first row of shard 1
    order, starts, group = np.array([0, 2, 1, 3]), np.array([0, 2, 3]), np.array([0, 0, 1, 2])
    keys, shards = np.array([10, 20, 30]), np.array([0, 0, 1], dtype=np.int16)
    copies = routing._other_registrations(order, starts, group, keys, shards, [2, 2])
    assert copies.rows() == [(10, 1)]


def test_inputs_checked_as_they_are_routed_get_the_verdicts_of_each_shard(tmp_path: Path) -> None:
    from pipelines import generate, nightly, sharded

    generate.generate(residents=6_000, seed=7, out=tmp_path / "generated")
    scanned = nightly.plan_inputs(_planted(tmp_path / "generated", tmp_path / "inputs"))
    n = 3
    municipalities = sharded.shard_map(scanned["residents"][0], n, pl.DataFrame(
        schema={"municipality_code": pl.String, "shard": pl.Int64}))
    raw = routing.route_inputs(scanned, n, municipalities, tmp_path / "raw")
    checked = routing.route_inputs(scanned, n, municipalities, tmp_path / "checked", RUN)
    reasons: dict[str, set] = {}
    for k in range(n):
        residents = validate.checked_residents(raw[k]["residents"][0], RUN).collect()
        valid = residents.lazy().filter(pl.col("reject_reason").is_null()).select("household_id")
        want = {
            "residents": residents,
            "accounts": validate.checked_accounts(raw[k]["accounts"][0], RUN).collect(),
            "applications": validate.checked_applications(raw[k]["applications"][0], valid, RUN).collect(),
        }
        got = {name: checked[k][name][0].collect() for name in routing.ROUTED}
        for name, frame in want.items():
            # the same rows, verdicts and details (an account's copy flag comes last)
            assert sorted(got[name].columns) == sorted(frame.columns), (name, k)
            assert got[name].select(frame.columns).equals(frame), (name, k)
            reasons.setdefault(name, set()).update(frame["reject_reason"].drop_nulls())
    assert {"duplicate_row", "duplicate_key"} <= reasons["residents"]
    assert {"duplicate_key", "bank_unknown"} <= reasons["accounts"]
    assert {"duplicate_key", "unknown_household"} <= reasons["applications"]
