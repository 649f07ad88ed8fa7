"""engine/ingest.py: the inputs' checksums, read by several threads, in file order."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

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
    expected = [{"path": str(p), "bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
                for p in files]
    assert ingest.file_checksums(source, readers=4) == expected
    assert ingest.file_checksums(source, readers=1) == expected
    single = ingest.Source("services", files[1], (files[1],))
    assert ingest.file_checksums(single) == expected[1:2]
