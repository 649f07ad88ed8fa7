"""A second night's paid-elsewhere join, timed: one shard's members against the state's paid
persons of the whole nation (what every shard's entitle read until ac8f035), and against the
shard's part of them routed once by `routing.route_paid` (what it reads now), with the routing's
own cost for the nation (benchmarks/RESULTS.md, "The second national night").

The nation is synthetic, written once into WORKDIR: `--nation` paid persons (person_key 1…N) in
`--shards` state parts, the state after a first night; one shard's `--members` members with
keys drawn from the nation. Prints the seconds of each, round by round, as JSON lines:

    .venv/bin/python benchmarks/paid_persons.py                  # the nation: 125M, 26 shards
    .venv/bin/python benchmarks/paid_persons.py --nation 1000000 --shards 3 --members 330000
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from engine import allocator

allocator.configure()  # before Polars loads, as the night does

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from engine import entitle, state  # noqa: E402
from pipelines import night_steps as steps  # noqa: E402
from pipelines import routing  # noqa: E402


def nation(folder: Path, n: int, shards: int) -> pl.LazyFrame:
    """The paid persons of a nation of `n`, in `shards` state parts (written once)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{state.part_name('paid_persons', k)}.parquet" for k in range(shards)]
    if not all(p.exists() for p in paths):
        for k, keys in enumerate(np.array_split(np.arange(1, n + 1, dtype=np.int64), shards)):
            pl.DataFrame({"person_key": keys, "household_id": keys // 2,
                          "paid_on": pl.Series(np.zeros(len(keys), dtype=np.int32)).cast(pl.Date)}) \
                .write_parquet(paths[k], **state.PARQUET)
    return pl.scan_parquet(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nation", type=int, default=125_000_000)
    parser.add_argument("--shards", type=int, default=26)
    parser.add_argument("--members", type=int, default=4_800_000, help="one shard's members")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "kyufu-paid-persons")
    args = parser.parse_args()
    paid = nation(args.workdir / "state", args.nation, args.shards)
    rng = np.random.default_rng(0)
    keys = rng.choice(args.nation, args.members, replace=False) + 1
    members = pl.LazyFrame({
        "person_key": keys, "household_id": keys // 2 + (rng.random(args.members) < 0.001),
        "is_eligible": np.ones(args.members, bool), "is_counted": np.ones(args.members, bool),
        "not_eligible_reason": pl.Series([None] * args.members, dtype=pl.String),
    })
    # every person registered once, in shard key % shards (the routing's lookup does not care how)
    everyone = np.arange(1, args.nation + 1, dtype=np.int64)
    people = routing.People(numbers=everyone, keys=everyone, shards=(everyone % args.shards).astype(np.int16),
                            copies=pl.DataFrame(schema={"person_key": pl.Int64, routing.SHARD: pl.Int16}))
    out = args.workdir / "members.parquet"

    def joined(elsewhere: pl.LazyFrame) -> float:
        start = time.perf_counter()
        entitle.without_paid_elsewhere(members, elsewhere).sink_parquet(out, **steps.CHECKPOINT)
        return round(time.perf_counter() - start, 2)

    for round_ in range(args.rounds):
        start = time.perf_counter()
        routed = routing.route_paid(paid, people, args.shards, args.workdir / "work")
        route_s = round(time.perf_counter() - start, 2)
        print(json.dumps({"round": round_ + 1, "route_paid_s": route_s, "join_whole_nation_s": joined(paid),
                          "join_routed_part_s": joined(routed[0])}), flush=True)
    shutil.rmtree(args.workdir / "work", ignore_errors=True)


if __name__ == "__main__":
    main()
