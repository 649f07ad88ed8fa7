"""Independent validator for Zengin 総合振込 files, written from research §4 and §5.2 only.

Deliberately shares no code with engine.zengin (nor engine.kana): it parses bytes field by field
with its own layout table, so a bug in the writer cannot hide in a shared helper.

    result = validate_transfer_file(data)
    assert result.errors == []
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field

RECORD_BYTES = 120
SUB = b"\x1a"  # MS-DOS EOF some tools append; readers tolerate it (zengin-rs)

# JIS X 0201 8-bit: ASCII 0x20-0x7E and half-width katakana 0xA1-0xDF (§4.1 コード区分 0).
JIS_X0201_BYTES = frozenset(range(0x20, 0x7F)) | frozenset(range(0xA1, 0xE0))

# §5.2 conservative safe set for names: 0-9 A-Z space ( ) - . and ｱ..ﾝ (0xB1-0xDD) ﾞ ﾟ (0xDE 0xDF).
# Not allowed: ｦ (0xA6), small kana (0xA7-0xAF), ｰ (0xB0), ･ (0xA5), ｢ ｣ (0xA2 0xA3), `/`.
NAME_SAFE_BYTES = (
    frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ ()-.") | frozenset(range(0xB1, 0xE0))
)

# (name, first byte 1-based, length, kind). Kinds: "N" digits; "C" left-justified text;
# "name" C restricted to the safe set; "S" all spaces; literals checked separately.
HEADER_LAYOUT = (
    ("data_division", 1, 1, "N"),
    ("kind_code", 2, 2, "N"),
    ("code_division", 4, 1, "N"),
    ("remitter_code", 5, 10, "N"),
    ("remitter_name", 15, 40, "name"),
    ("transfer_date_mmdd", 55, 4, "N"),
    ("bank_code", 59, 4, "N"),
    ("bank_name", 63, 15, "name"),
    ("branch_code", 78, 3, "N"),
    ("branch_name", 81, 15, "name"),
    ("account_type", 96, 1, "N"),
    ("account_number", 97, 7, "N"),
    ("dummy", 104, 17, "S"),
)
DATA_LAYOUT = (
    ("data_division", 1, 1, "N"),
    ("bank_code", 2, 4, "N"),
    ("bank_name", 6, 15, "name"),
    ("branch_code", 21, 3, "N"),
    ("branch_name", 24, 15, "name"),
    ("clearing_house", 39, 4, "N or spaces"),
    ("account_type", 43, 1, "N"),
    ("account_number", 44, 7, "N"),
    ("payee_name", 51, 30, "name"),
    ("amount_yen", 81, 10, "N"),
    ("new_code", 91, 1, "N"),
    ("customer_code_1", 92, 10, "N or spaces"),
    ("customer_code_2", 102, 10, "N or spaces"),
    ("transfer_division", 112, 1, "N or spaces"),
    ("identification", 113, 1, "C"),
    ("dummy", 114, 7, "S"),
)
TRAILER_LAYOUT = (
    ("data_division", 1, 1, "N"),
    ("record_count", 2, 6, "N"),
    ("total_yen", 8, 12, "N"),
    ("dummy", 20, 101, "S"),
)
END_LAYOUT = (("data_division", 1, 1, "N"), ("dummy", 2, 119, "S"))
LAYOUTS = {"1": HEADER_LAYOUT, "2": DATA_LAYOUT, "8": TRAILER_LAYOUT, "9": END_LAYOUT}

for _layout in LAYOUTS.values():  # the layout table itself must tile 120 bytes
    _ends = [start + length for _, start, length, _ in _layout]
    assert [s for _, s, _, _ in _layout] == [1, *_ends[:-1]] and _ends[-1] == RECORD_BYTES + 1

MAX_ERRORS = 200


@dataclass
class Batch:
    """One header … trailer group."""

    header: dict[str, str]
    data: list[dict[str, str]] = field(default_factory=list)
    trailer: dict[str, str] | None = None

    @property
    def transfer_date_mmdd(self) -> str:
        return self.header.get("transfer_date_mmdd", "")

    @property
    def total_yen(self) -> int:
        return sum(int(d["amount_yen"]) for d in self.data if d["amount_yen"].isdigit())


@dataclass
class ValidationResult:
    batches: list[Batch] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    record_count: int = 0  # all records, header to end
    line_break: str = ""  # "CRLF" or "none"
    final_newline: bool = False

    @property
    def data_records(self) -> list[dict[str, str]]:
        return [d for b in self.batches for d in b.data]

    @property
    def total_yen(self) -> int:
        return sum(b.total_yen for b in self.batches)

    @property
    def transfer_dates(self) -> list[str]:
        return [b.transfer_date_mmdd for b in self.batches]

    @property
    def ok(self) -> bool:
        return not self.errors


def _split_records(data: bytes, result: ValidationResult) -> list[bytes]:
    if data.endswith(SUB):
        data = data[:-1]
    if b"\r\n" in data:
        result.line_break = "CRLF"
        result.final_newline = data.endswith(b"\r\n")
        body = data[:-2] if result.final_newline else data
        records = body.split(b"\r\n")
        for number, record in enumerate(records, start=1):
            if b"\r" in record or b"\n" in record:
                result.errors.append(f"record {number}: bare CR or LF (only CRLF is allowed)")
        return records
    if b"\n" in data or b"\r" in data:
        result.errors.append("line breaks must be CRLF; LF-only and CR-only files are rejected")
        return []
    result.line_break = "none"
    return [data[i : i + RECORD_BYTES] for i in range(0, len(data), RECORD_BYTES)]


def _is_valid_mmdd(mmdd: str) -> bool:
    if len(mmdd) != 4 or not mmdd.isdigit():
        return False
    month, day = int(mmdd[:2]), int(mmdd[2:])
    # No year in the file: accept 29 February (a leap year is possible).
    return 1 <= month <= 12 and 1 <= day <= calendar.monthrange(2020, month)[1]


def _check_field(raw: bytes, kind: str, names_safe: bool) -> str | None:
    """Return what is wrong with one field's bytes, or None."""
    if kind == "N":
        return None if raw.isdigit() else "must be digits, right-justified and zero-filled"
    if kind == "N or spaces":
        if raw.isdigit() or raw == b" " * len(raw):
            return None
        return "must be digits (zero-filled) or all spaces"
    if kind == "S":
        return None if raw == b" " * len(raw) else "dummy must be all spaces"
    stripped = raw.rstrip(b" ")
    if stripped != raw.strip(b" "):
        return "character field must be left-justified (no leading spaces)"
    if kind == "name" and names_safe:
        bad = sorted({b for b in raw if b not in NAME_SAFE_BYTES})
        if bad:
            shown = bytes(bad).decode("cp932", errors="replace")
            return f"characters outside the §5.2 safe set: {shown!r}"
    return None


def _parse_record(record: bytes, number: int, result: ValidationResult,
                  names_safe: bool) -> dict[str, str] | None:
    def error(msg: str) -> None:
        result.errors.append(f"record {number}: {msg}")

    if len(record) != RECORD_BYTES:
        error(f"is {len(record)} bytes, expected {RECORD_BYTES}")
        return None
    bad = sorted({b for b in record if b not in JIS_X0201_BYTES})
    if bad:
        error(f"bytes outside JIS X 0201 single-byte: {[hex(b) for b in bad[:5]]}")
        return None
    division = chr(record[0])
    layout = LAYOUTS.get(division)
    if layout is None:
        error(f"unknown data division {division!r}")
        return None
    fields: dict[str, str] = {"division": division}
    for name, start, length, kind in layout:
        raw = record[start - 1 : start - 1 + length]
        problem = _check_field(raw, kind, names_safe)
        if problem:
            error(f"{name} (bytes {start}-{start + length - 1}) {problem}: "
                  f"{raw.decode('cp932')!r}")
        fields[name] = raw.decode("cp932")
    return fields


def _check_header(h: dict[str, str], number: int, result: ValidationResult,
                  kind_code: str) -> None:
    def error(msg: str) -> None:
        result.errors.append(f"record {number} (header): {msg}")

    if h["kind_code"] != kind_code:
        error(f"kind_code must be {kind_code!r}, got {h['kind_code']!r}")
    if h["code_division"] != "0":
        error(f"code_division must be '0' (JIS), got {h['code_division']!r}")
    if not _is_valid_mmdd(h["transfer_date_mmdd"]):
        error(f"transfer date must be a valid MMDD, got {h['transfer_date_mmdd']!r}")
    if not h["remitter_name"].strip():
        error("remitter_name is blank")
    if h["account_type"] not in ("1", "2", "9"):
        error(f"account_type must be 1, 2 or 9, got {h['account_type']!r}")


def _check_data(d: dict[str, str], number: int, result: ValidationResult) -> None:
    def error(msg: str) -> None:
        result.errors.append(f"record {number} (data): {msg}")

    if d["account_type"] not in ("1", "2", "4", "9"):
        error(f"account_type must be 1, 2, 4 or 9, got {d['account_type']!r}")
    if not d["payee_name"].strip():
        error("payee_name is blank")
    if d["amount_yen"].isdigit() and int(d["amount_yen"]) == 0:
        error("amount_yen is 0")
    if d["new_code"] not in ("0", "1", "2"):
        error(f"new_code must be 0, 1 or 2, got {d['new_code']!r}")
    if d["transfer_division"] not in ("7", "8", " "):
        error(f"transfer_division must be 7, 8 or space, got {d['transfer_division']!r}")
    if d["identification"] not in (" ", "Y"):
        error(f"identification must be space or 'Y', got {d['identification']!r}")


def validate_transfer_file(data: bytes, *, kind_code: str = "21",
                           names_safe: bool = True) -> ValidationResult:
    """Parse and check a whole file; every problem found goes to `result.errors`.

    Args:
        names_safe: also require name fields to use only the §5.2 safe set (not only JIS X 0201).
    """
    result = ValidationResult()
    records = _split_records(data, result)
    if not records or records == [b""]:
        result.errors.append("file has no records")
        return result
    result.record_count = len(records)
    state = "start"  # start → header → (data)* → trailer → header … | end
    batch: Batch | None = None
    for number, record in enumerate(records, start=1):
        if len(result.errors) > MAX_ERRORS:
            result.errors.append("… too many errors, stopped")
            return result
        fields = _parse_record(record, number, result, names_safe)
        if fields is None:
            continue
        division = fields.pop("division")
        expected = {"start": "1", "header": "28", "data": "28", "trailer": "19", "end": ""}[state]
        if division not in expected:
            result.errors.append(
                f"record {number}: data division {division} cannot follow {state} "
                f"(order is 1, 2*, 8, [1, 2*, 8 …], 9)")
        if division == "1":
            _check_header(fields, number, result, kind_code)
            batch = Batch(header=fields)
            result.batches.append(batch)
            state = "header"
        elif division == "2":
            _check_data(fields, number, result)
            if batch is not None:
                batch.data.append(fields)
            state = "data"
        elif division == "8":
            if batch is not None:
                batch.trailer = fields
                if fields["record_count"].isdigit() and int(fields["record_count"]) != len(batch.data):
                    result.errors.append(
                        f"record {number} (trailer): record_count {int(fields['record_count'])} "
                        f"!= {len(batch.data)} data records")
                if fields["total_yen"].isdigit() and int(fields["total_yen"]) != batch.total_yen:
                    result.errors.append(
                        f"record {number} (trailer): total_yen {int(fields['total_yen'])} "
                        f"!= sum of amounts {batch.total_yen}")
            state = "trailer"
        elif division == "9":
            state = "end"
    if state != "end":
        result.errors.append(f"file must finish with an end record (data division 9), "
                             f"last state was {state}")
    return result
