"""Free disk before a night starts: what the night will write, estimated from the size of its
inputs, against the free space of each disk it writes to.

A night that fills its disk stops cleanly (DiskFullError.during), but only after the time spent
up to that point: half an hour at national scale. Checking first turns that into a refusal at
the start, naming each disk, what goes there, the estimate and the free space.

The estimate is per byte of Parquet input (every file of every input), measured
(benchmarks/RESULTS.md, "Disk"): each kind of folder at its own peak (the checkpoints, the
night's spill, removed at the end; the outputs it publishes; the state version it commits),
and the peak of all three together, which comes earlier than the outputs' and the state's
(a sharded night removes its checkpoints shard by shard as its outputs grow). A disk that holds
all three needs the night's peak, a disk that holds some of them the sum of their peaks; then
a margin of 10% for data that compresses worse than the generator's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.errors import DiskFullError

# bytes per byte of Parquet input, each folder at its own peak, and the whole night's peak
# (benchmarks/RESULTS.md "Disk"). Sharded: the same at 10M (3 shards: 2.69 GB at the peak for
# 0.54 GB of inputs, measured) and at 125M (26 shards: 34.0 GB for 6.71 GB, measured on a
# quiet machine by benchmarks/national.py). In one piece (measured at 1M: 0.33 GB for 54 MB): the
# checkpoints stay to the end, and analyst.duckdb holds the tables themselves, not views
PEAK_PER_INPUT_BYTE = {
    "sharded": {"checkpoints": 4.9, "outputs": 1.92, "state": 0.99, "night": 5.05},
    "plain": {"checkpoints": 3.45, "outputs": 2.75, "state": 0.98, "night": 6.2},
}
MARGIN = 1.1
# below this the estimate is noise (fixed-size files: DuckDB, run record, small tables)
FLOOR_BYTES = 256 * 2**20


def estimate(input_bytes: int, *, sharded: bool = True) -> dict[str, int]:
    """Bytes each kind of folder needs at its peak, and the whole night ("night") on one disk,
    for a night over `input_bytes` of Parquet input, with the margin."""
    ratios = PEAK_PER_INPUT_BYTE["sharded" if sharded else "plain"]
    return {what: int(ratio * input_bytes * MARGIN) for what, ratio in ratios.items()}


def size(n: int) -> str:
    """Bytes as an operator reads them: GB from one gigabyte up, else MB."""
    return f"{n / 1e9:.1f} GB" if n >= 10**9 else f"{n / 1e6:.0f} MB"


def _existing(path: Path) -> Path:
    """The folder itself or its nearest existing parent (the night creates the rest)."""
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


def _device(anchor: Path) -> int:
    return anchor.stat().st_dev


def shortfalls(input_bytes: int, folders: dict[str, Path], *, sharded: bool = True) -> list[str]:
    """One line per disk that has less free space than the night needs there (empty if none).
    `folders`: checkpoints, outputs, state → where each goes."""
    needs = estimate(input_bytes, sharded=sharded)
    disks: dict[int, dict] = {}
    for what, folder in folders.items():
        anchor = _existing(folder)
        disk = disks.setdefault(_device(anchor), {"anchor": anchor, "kinds": [], "parts": []})
        disk["kinds"].append(what)
        disk["parts"].append(f"{what} {size(needs[what])} in {folder}")
    lines = []
    for disk in disks.values():
        need = sum(needs[what] for what in disk["kinds"])
        if set(disk["kinds"]) == set(folders):  # all on one disk: the night's peak, not the sum
            need = min(need, needs["night"])
        free = shutil.disk_usage(disk["anchor"]).free
        if need > max(free, FLOOR_BYTES):
            lines.append(f"  the disk of {disk['anchor']}: {size(free)} free, the night needs about {size(need)} "
                         f"({'; '.join(disk['parts'])}, at their own peaks)")
    return lines


def check_free_space(input_bytes: int, folders: dict[str, Path], *, sharded: bool = True) -> None:
    """Raise DiskFullError before anything is written if a disk has too little free space."""
    short = shortfalls(input_bytes, folders, sharded=sharded)
    if short:
        raise DiskFullError.before(input_bytes, short)
