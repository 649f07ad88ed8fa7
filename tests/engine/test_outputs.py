"""engine/outputs.py: the analyst tables' digests, hashed in the background as they are written."""

from __future__ import annotations

import os
from pathlib import Path

from engine import outputs


def test_digests_hashed_in_the_background_follow_their_files_when_moved(tmp_path: Path) -> None:
    files = []
    for k, size in enumerate([5 << 20, 0, 123]):
        path = tmp_path / f"part-{k}.parquet"
        path.write_bytes(os.urandom(size))
        files.append(path)
    expected = [outputs.sha256_of(p) for p in files]
    digests = outputs.Digests()
    digests.add(files[:2])
    moved = tmp_path / "placed" / "part-000.parquet"
    moved.parent.mkdir()
    digests.move(files[0], moved)  # at once: possibly before the background has read it
    assert moved.exists()
    assert digests.of(moved) == expected[0]
    assert digests.of(files[2]) == expected[2]  # never added: hashed when asked for
    assert digests.of([moved, files[1], files[2]]) == outputs.sha256_of([moved, files[1], files[2]])
    digests.stop()
    assert not files[0].exists()
