"""The national night's routing alone, timed: every input split into shards as the night splits
it (pipelines/routing.py), on inputs of any size, without the rest of the night.

    route_inputs   residents, accounts and applications, each row checked as it is routed
                   (the night's `route` stage, which validates them)
    person_keys    My Number → person_key over the nation's valid residents, each shard's
                   keys and the persons of each points shard (the rest of `persons`), for a
                   state with no persons yet (the first night)
    route_points   wallets and transactions by their owner's person_key (most of `persons`)

Prints the seconds of each and the peak RSS as JSON. To compare two commits side by side, run
it twice in a row, the older code from a `git worktree` put first on PYTHONPATH:

    .venv/bin/python benchmarks/route_national.py --inputs /tmp/kyufu-national/125000000-seed2020/inputs
    PYTHONPATH=/tmp/old .venv/bin/python benchmarks/route_national.py --inputs ...
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

from engine import allocator

allocator.configure()  # before Polars loads, as the night does

import polars as pl  # noqa: E402

from engine import state  # noqa: E402
from pipelines import routing, sharded  # noqa: E402
from pipelines.nightly import plan_inputs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=Path, required=True, help="a generated input folder")
    parser.add_argument("--shards", type=int, default=None, help="default: as the night would choose")
    parser.add_argument("--date", type=date.fromisoformat, default=date(2021, 12, 31),
                        help="the run date the rows are checked for (default: the national benchmark's)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "kyufu-route-national",
                        help="scratch folder (emptied first, removed after)")
    args = parser.parse_args()
    scanned = plan_inputs(args.inputs)
    residents = scanned["residents"][0]
    n = args.shards or sharded.shards_for(routing.rows_of(residents))
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    try:
        started = time.perf_counter()
        municipalities = sharded.shard_map(residents, n, state.SCHEMAS["shard_map"].to_frame())
        inputs = routing.route_inputs(scanned, n, municipalities, args.work, args.date)
        routed = time.perf_counter()
        valid = [frame.filter(pl.col("reject_reason").is_null()) for frame, _ in
                 (shard["residents"] for shard in inputs)]
        people = routing.person_keys(state.SCHEMAS["persons"].to_frame().lazy(), valid, n, args.work)[3]
        keyed = time.perf_counter()
        routing.route_points(scanned, people, n, args.work)
        done = time.perf_counter()
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    print(json.dumps({"shards": n, "route_inputs_s": round(routed - started, 1),
                      "person_keys_s": round(keyed - routed, 1), "route_points_s": round(done - keyed, 1),
                      "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}))


if __name__ == "__main__":
    main()
