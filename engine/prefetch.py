"""Files read ahead into the page cache by a background thread, in large sequential reads.

A national night writes about 35 GB of checkpoints on a machine with 24 GB of memory, so a
shard's checkpoints and routed inputs have left the page cache by the time the shard reads them
back. Polars then reads them column chunk by column chunk, in many smaller reads; on this
machine's disk, whose time per request grows in busy hours, the night's stages waited on the disk
for up to 43% of their time (benchmarks/RESULTS.md, "Runs 34 to 36"). Read ahead, one file after
another in 4 MB blocks, while the stage before computes, the same bytes are in memory when Polars
asks for them.

Reading ahead changes no result: it only reads. A file removed before its turn is skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

BLOCK = 1 << 22


class ReadAhead:
    """Queue files (or every file under folders) to be read in the background, in order."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="kyufu-read-ahead")
        self._stopped = threading.Event()
        self._buffer = bytearray(BLOCK)

    def read(self, paths: Iterable[Path]) -> Future:
        """Queue `paths` (files, or folders read file by file in name order), after those queued;
        the future gives the bytes read."""
        return self._pool.submit(self._read_all, [Path(p) for p in paths])

    def _read_all(self, paths: list[Path]) -> int:
        done = 0
        for path in paths:
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in files:
                done += self._read_one(file)
        return done

    def _read_one(self, path: Path) -> int:
        try:
            with path.open("rb", buffering=0) as f:
                done = 0
                while not self._stopped.is_set():
                    n = f.readinto(self._buffer)
                    if not n:
                        break
                    done += n
                return done
        except OSError:  # removed or replaced meanwhile: nothing to read ahead
            return 0

    def stop(self) -> None:
        """Drop what is queued, end the read under way at its next block, wait for the thread."""
        self._stopped.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
