"""engine/prefetch.py: files and folders read ahead in the background, in order, skipping what is gone."""

from __future__ import annotations

import os
import time
from concurrent.futures import CancelledError
from pathlib import Path

import pytest

from engine import prefetch


def test_files_and_folders_are_read_whole_and_missing_ones_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "shard-1"
    (folder / "03_entitle").mkdir(parents=True)
    sizes = {folder / "03_entitle" / "members.parquet": (9 << 20) + 5, folder / "rejects.parquet": 0,
             tmp_path / "keys.parquet": 4097}
    for path, size in sizes.items():
        path.write_bytes(os.urandom(size))
    ahead = prefetch.ReadAhead()
    try:
        assert ahead.read([folder]).result() == (9 << 20) + 5
        assert ahead.read([tmp_path / "keys.parquet", tmp_path / "gone.parquet", tmp_path / "gone"]).result() == 4097
    finally:
        ahead.stop()


def test_stop_drops_what_is_queued(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "part.parquet"
    path.write_bytes(os.urandom(1 << 20))
    ahead = prefetch.ReadAhead()
    started = []
    real = ahead._read_all

    def slow(paths):  # the first read waits until stop() is under way
        started.append(paths)
        deadline = time.monotonic() + 10
        while not ahead._stopped.is_set() and time.monotonic() < deadline:
            time.sleep(0.005)
        return real(paths)

    monkeypatch.setattr(ahead, "_read_all", slow)
    first, second = ahead.read([path]), ahead.read([path])
    ahead.stop()
    assert first.result() == 0  # stopped before its first block
    with pytest.raises(CancelledError):
        second.result()
    assert len(started) == 1
