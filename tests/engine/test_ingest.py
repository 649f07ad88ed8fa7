"""engine/ingest.py: the inputs' checksums, read by several threads, in file order."""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import CancelledError
from pathlib import Path

import pytest

from engine import ingest


def test_checksums_read_in_parallel_are_each_files_own_in_file_order(tmp_path: Path) -> None:
    folder = tmp_path / "transactions"
    folder.mkdir()
    # sizes that finish out of order: a large first file, small ones after it, one empty
    sizes = [9 << 20, 1, 4096, 0, (5 << 20) + 3, 17]
    files = []
    for k, size in enumerate(sizes):
        path = folder / f"part-{k:05d}.parquet"
        path.write_bytes(os.urandom(size))
        files.append(path)
    source = ingest.Source("transactions", folder, tuple(files))
    expected = _hashed(source)
    assert _checksums(source, readers=4) == expected
    assert _checksums(source, readers=1) == expected
    single = ingest.Source("services", files[1], (files[1],))
    assert _checksums(single) == expected[1:2]


def _checksums(source: ingest.Source, readers: int = ingest.CHECKSUM_READERS) -> list[dict]:
    """One input's checksums, waited for."""
    checksums = ingest.Checksums({source.dataset: source}, readers)
    try:
        return checksums.record()[source.dataset]["files"]
    finally:
        checksums.stop()


def _hashed(source: ingest.Source) -> list[dict]:
    """The checksums computed here, file by file, in one thread."""
    return [{"path": str(p), "bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
            for p in source.files]


def _files(folder: Path, sizes: list[int]) -> tuple[Path, ...]:
    folder.mkdir()
    for k, size in enumerate(sizes):
        (folder / f"part-{k:05d}.parquet").write_bytes(os.urandom(size))
    return tuple(sorted(folder.iterdir()))


def test_checksums_read_in_the_background_are_each_inputs_own(tmp_path: Path) -> None:
    sources = {
        "transactions": ingest.Source("transactions", tmp_path / "transactions",
                                      _files(tmp_path / "transactions", [9 << 20, 1, 0, 4096])),
        "services": ingest.Source("services", tmp_path / "services" / "part-00000.parquet",
                                  _files(tmp_path / "services", [17])),
    }
    checksums = ingest.Checksums(sources, readers=3)
    record = checksums.record()
    checksums.stop()
    assert list(record) == ["transactions", "services"]
    for name, source in sources.items():
        assert record[name] == {"path": str(source.path), "files": _hashed(source)}


def test_stopped_checksums_end_their_reads_and_raise_no_error(tmp_path: Path, monkeypatch) -> None:
    files = _files(tmp_path / "transactions", [8 << 20] * 6)  # 3 reads each (2 blocks, then the end)
    reads = []
    real_open = Path.open
    checksums: ingest.Checksums | None = None

    def counting_open(self: Path, *args, **kwargs):
        handle = real_open(self, *args, **kwargs)
        read = handle.read

        def read_block(size: int = -1) -> bytes:
            reads.append(self.name)
            for _ in range(2000):  # the first read waits until stop() is called
                if len(reads) > 1 or (checksums is not None and checksums._stopped.is_set()):
                    break
                time.sleep(0.005)
            return read(size)

        handle.read = read_block
        return handle

    monkeypatch.setattr(Path, "open", counting_open)
    checksums = ingest.Checksums({"transactions": ingest.Source("transactions", files[0].parent, files)}, readers=1)
    checksums.stop()
    # the reads under way when stop() came (18 without it), none of them an error
    assert 1 <= len(reads) <= 4
    with pytest.raises((CancelledError, ingest._Stopped)):
        checksums.record()
