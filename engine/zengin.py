"""Zengin: the 総合振込 (種別コード 21) bank transfer file, 120-byte records (research §4).

transfers (one row per payee, names already normalised by engine.kana) → header + data records +
trailer + end record, CRLF-separated, JIS X 0201 single bytes (cp932). Built column-wise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
from numba import njit, prange

from engine import reference
from engine.errors import EngineError
from engine.similarity import string_buffers

RECORD_LENGTH = 120
LINE_BREAK = "\r\n"
KIND_CODE = "21"  # 総合振込
CODE_DIVISION = "0"  # コード区分: JIS
CLEARING_HOUSE = "0000"  # 手形交換所番号, unused
TRANSFER_DIVISION = "7"  # 振込指定区分: 電信扱 (devture writes 7; GMO: 7 or space)
IDENTIFICATION = " "  # 識別表示: space = 顧客コード, not EDI
MAX_AMOUNT_YEN = 9_999_999_999  # 振込金額, N(10)
MAX_RECORDS = 999_999  # 合計件数, N(6)
MAX_TOTAL_YEN = 999_999_999_999  # 合計金額, N(12)
HEADER_ACCOUNT_TYPES = ("1", "2", "9")  # 普通, 当座, その他
PAYEE_ACCOUNT_TYPES = ("1", "2", "4", "9")  # + 貯蓄
NEW_CODES = ("0", "1", "2")

# JIS X 0201 as one byte each in cp932: ASCII 0x20–0x7E and half-width katakana U+FF61–FF9F.
# The writer enforces only this encoding rule; the stricter §5.2 name set is the normaliser's
# job (engine.kana.is_zengin_safe) and the validator's, so pre-normalised names (the devture
# fixture's ｰ) are written exactly as given.
SINGLE_BYTE_PATTERN = r"^[\x20-\x7E\x{FF61}-\x{FF9F}]*$"
_SINGLE_BYTE_RE = re.compile(r"^[\x20-\x7e\uff61-\uff9f]*$")

TRANSFER_COLUMNS = (
    "bank_code",
    "bank_name_kana",
    "branch_code",
    "branch_name_kana",
    "account_type",
    "account_number",
    "payee_name_kana",
    "amount_yen",
    "customer_code_1",
    "customer_code_2",
)

# (column, width) of each N field; digits only, right-justified and zero-filled.
_NUMERIC_FIELDS = {"bank_code": 4, "branch_code": 3, "account_number": 7}
# Customer codes: N(10) as well, but a null is written as 10 spaces (as in the devture fixture).
_CUSTOMER_CODE_FIELDS = {"customer_code_1": 10, "customer_code_2": 10}
_MAX_EXAMPLES = 5


class TransferFileError(EngineError, ValueError):
    """The transfers cannot be written as a valid Zengin file; nothing was written."""

    @classmethod
    def from_problems(cls, problems: list[str]) -> TransferFileError:
        lines = [f"zengin transfer file: {len(problems)} problem(s)"]
        lines += [f"  {p}" for p in problems]
        lines += [
            "",
            "Hint: names must be normalised with engine.kana.zengin_name_expr; codes are digit "
            "strings; amounts are whole yen in 1..9,999,999,999.",
        ]
        return cls("\n".join(lines))


@dataclass(frozen=True)
class Remitter:
    """The paying municipality's account, as written in the header record (§4.2)."""

    code: str  # 振込依頼人コード, 10 digits, assigned by the sending bank
    name_kana: str  # 振込依頼人名, half-width, at most 40 characters
    bank_code: str
    bank_name_kana: str  # cut to 15 characters
    branch_code: str
    branch_name_kana: str  # cut to 15 characters
    account_type: str
    account_number: str

    def __post_init__(self) -> None:
        problems = []
        for name, width in (("code", 10), ("bank_code", 4), ("branch_code", 3),
                            ("account_number", 7)):
            value = getattr(self, name)
            if not (isinstance(value, str) and value.isascii() and value.isdigit()
                    and len(value) <= width):
                problems.append(f"remitter {name} must be 1–{width} digits, got {value!r}")
        if self.account_type not in HEADER_ACCOUNT_TYPES:
            problems.append(
                f"remitter account_type must be one of {HEADER_ACCOUNT_TYPES}, "
                f"got {self.account_type!r}")
        for name in ("name_kana", "bank_name_kana", "branch_name_kana"):
            value = getattr(self, name)
            if not _SINGLE_BYTE_RE.match(value):
                problems.append(
                    f"remitter {name} has characters outside JIS X 0201 half-width, got {value!r}")
        if len(self.name_kana) > 40 or not self.name_kana.strip():
            problems.append(f"remitter name_kana must be 1–40 characters, got {self.name_kana!r}")
        if problems:
            raise TransferFileError.from_problems(problems)


def _numeric(value: str | int, width: int) -> str:
    return str(value).rjust(width, "0")


def _character(value: str, width: int) -> str:
    return value[:width].ljust(width, " ")


def header_record(remitter: Remitter, transfer_date: date, *, kind_code: str = KIND_CODE) -> str:
    """Return the 120-character header record (データ区分 1) for `transfer_date` (MMDD)."""
    return (
        "1"
        + kind_code
        + CODE_DIVISION
        + _numeric(remitter.code, 10)
        + _character(remitter.name_kana, 40)
        + transfer_date.strftime("%m%d")
        + _numeric(remitter.bank_code, 4)
        + _character(remitter.bank_name_kana, 15)
        + _numeric(remitter.branch_code, 3)
        + _character(remitter.branch_name_kana, 15)
        + remitter.account_type
        + _numeric(remitter.account_number, 7)
        + " " * 17
    )


def trailer_record(record_count: int, total_yen: int) -> str:
    """Return the 120-character trailer record (データ区分 8): count and sum of the data records."""
    problems = []
    if not 0 <= record_count <= MAX_RECORDS:
        problems.append(f"record count must be 0..{MAX_RECORDS:,}, got {record_count:,}")
    if not 0 <= total_yen <= MAX_TOTAL_YEN:
        problems.append(f"total amount must be 0..{MAX_TOTAL_YEN:,} yen, got {total_yen:,}")
    if problems:
        raise TransferFileError.from_problems(problems)
    return "8" + _numeric(record_count, 6) + _numeric(total_yen, 12) + " " * 101


def end_record() -> str:
    """Return the 120-character end record (データ区分 9)."""
    return "9" + " " * 119


def _as_text(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.String)


def data_record_expr(*, new_code: str = "1") -> pl.Expr:
    """Return the 120-character data record (データ区分 2) of each transfer row, as an expression.

    Expects checked input (see `data_records`): it pads and cuts but does not validate.
    """
    parts: list[pl.Expr | str] = [
        pl.lit("2"),
        _as_text("bank_code").str.pad_start(4, "0"),
        _as_text("bank_name_kana").fill_null("").str.slice(0, 15).str.pad_end(15),
        _as_text("branch_code").str.pad_start(3, "0"),
        _as_text("branch_name_kana").fill_null("").str.slice(0, 15).str.pad_end(15),
        pl.lit(CLEARING_HOUSE),
        _as_text("account_type"),
        _as_text("account_number").str.pad_start(7, "0"),
        _as_text("payee_name_kana").str.slice(0, 30).str.pad_end(30),
        _as_text("amount_yen").str.pad_start(10, "0"),
        pl.lit(new_code),
        _as_text("customer_code_1").str.pad_start(10, "0").fill_null(" " * 10),
        _as_text("customer_code_2").str.pad_start(10, "0").fill_null(" " * 10),
        pl.lit(TRANSFER_DIVISION + IDENTIFICATION + " " * 7),
    ]
    return pl.concat_str(parts).alias("record")


def _field_checks() -> dict[str, tuple[str, pl.Expr]]:
    """Named rules: field → (rule text, expression true where the row breaks it)."""
    checks: dict[str, tuple[str, pl.Expr]] = {}
    for column, width in _NUMERIC_FIELDS.items():
        text = _as_text(column)
        checks[column] = (
            f"must be 1–{width} digits",
            text.is_null() | ~text.str.contains(rf"^[0-9]{{1,{width}}}$"),
        )
    checks["account_type"] = (
        f"must be one of {PAYEE_ACCOUNT_TYPES}",
        ~_as_text("account_type").is_in(PAYEE_ACCOUNT_TYPES).fill_null(False),
    )
    for column, width in _CUSTOMER_CODE_FIELDS.items():
        checks[column] = (
            f"must be 1–{width} digits or null (written as spaces)",
            ~_as_text(column).str.contains(rf"^[0-9]{{1,{width}}}$").fill_null(True),
        )
    for column in ("bank_name_kana", "branch_name_kana"):  # optional: null → spaces
        checks[column] = (
            "has characters outside JIS X 0201 half-width (kanji or full-width kana?)",
            ~_as_text(column).str.contains(SINGLE_BYTE_PATTERN).fill_null(True),
        )
    checks["payee_name_kana"] = (
        "is blank or has characters outside JIS X 0201 half-width (kanji or full-width kana?)",
        ~_as_text("payee_name_kana").str.contains(SINGLE_BYTE_PATTERN).fill_null(False)
        | (_as_text("payee_name_kana").str.strip_chars(" ").str.len_chars() == 0).fill_null(True),
    )
    checks["amount_yen"] = (
        f"must be whole yen in 1..{MAX_AMOUNT_YEN:,}",
        ~pl.col("amount_yen").is_between(1, MAX_AMOUNT_YEN).fill_null(False),
    )
    return checks


def _example(value: object) -> object:
    """An example value for an error message, withholding anything shaped like a My Number."""
    if re.fullmatch(r"[0-9]{12}", str(value)):
        return "<12-digit value withheld>"
    return value


def _check_columns(schema: pl.Schema) -> None:
    missing = [c for c in TRANSFER_COLUMNS if c not in schema]
    problems = [f"missing column(s): {missing}"] if missing else []
    if "amount_yen" in schema and not schema["amount_yen"].is_integer():
        problems.append(f"amount_yen is {schema['amount_yen']}, expected Int64 (whole yen)")
    if problems:
        raise TransferFileError.from_problems(problems)


def checked_transfers(transfers: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """Collect `transfers` and raise TransferFileError listing every broken rule at once."""
    _check_columns(transfers.collect_schema())
    frame = transfers.lazy().select(TRANSFER_COLUMNS).collect()
    checks = _field_checks()
    broken = frame.select(
        **{f"{column}": rule for column, (_, rule) in checks.items()}
    )
    counts = broken.sum().row(0, named=True)
    problems = []
    for column, (text, _) in checks.items():
        if counts[column]:
            examples = [_example(v) for v in
                        frame.filter(broken[column])[column].head(_MAX_EXAMPLES).to_list()]
            problems.append(
                f"{column} {text}: {counts[column]:,} row(s), e.g. {examples}")
    if problems:
        raise TransferFileError.from_problems(problems)
    return frame


def _check_new_code(new_code: str) -> None:
    if new_code not in NEW_CODES:
        msg = f"new_code (新規コード) must be one of {NEW_CODES}, got {new_code!r}"
        raise TransferFileError.from_problems([msg])


def data_records(transfers: pl.LazyFrame | pl.DataFrame, *, new_code: str = "1") -> pl.Series:
    """Return one 120-character data record per transfer row, in input order.

    Input columns: bank_code, bank_name_kana, branch_code, branch_name_kana, account_type,
    account_number, payee_name_kana (already normalised), amount_yen (Int64), customer_code_1,
    customer_code_2 (digits or integers; null → spaces). Codes may be strings or integers.
    Raises TransferFileError naming every broken field with examples. Any number of rows: the
    per-file limits (999,999 records, ¥999,999,999,999) are checked by `trailer_record`.
    """
    _check_new_code(new_code)
    frame = checked_transfers(transfers)
    return frame.select(data_record_expr(new_code=new_code)).to_series()


# each data record's fields as (column, first byte, width, kind, rule): N fields right-justified
# and zero-filled, C fields transcoded to cp932, cut and space-filled; the rule the kernel checks
# besides the kind's (N: 1–width digits or an integer that fits; C: JIS X 0201 single bytes):
# "required" (not null), "nullable" (null: spaces), "nonblank" (required, not only spaces),
# "positive" (required, at least 1)
_LAYOUT = (
    ("bank_code", 1, 4, "N", "required"), ("bank_name_kana", 5, 15, "C", "nullable"),
    ("branch_code", 20, 3, "N", "required"), ("branch_name_kana", 23, 15, "C", "nullable"),
    ("account_type", 42, 1, "N", "required"), ("account_number", 43, 7, "N", "required"),
    ("payee_name_kana", 50, 30, "C", "nonblank"), ("amount_yen", 80, 10, "N", "positive"),
    ("customer_code_1", 91, 10, "N", "nullable"), ("customer_code_2", 101, 10, "N", "nullable"),
)
RECORD_BYTES = RECORD_LENGTH + len(LINE_BREAK)
_DIGITS, _NUMBER, _TEXT = 0, 1, 2


@njit(cache=True, nogil=True, inline="always")
def _put_record(out, row, template, kinds, starts, widths, required, minimum, nonblank, offsets, data,
                numbers, valids):
    """Row `row` of `_put_records`; returns the first field that breaks its rule, or -1."""
    out[row, :] = template
    for f in range(kinds.shape[0]):
        start, width = starts[f], widths[f]
        if not valids[f, row]:
            if required[f]:
                return f
            continue  # the template's spaces
        kind = kinds[f]
        if kind == _NUMBER:
            value = numbers[f, row]
            if value < minimum[f]:
                return f
            for k in range(width - 1, -1, -1):
                out[row, start + k] = 0x30 + value % 10
                value //= 10
            if value:
                return f
            continue
        i, stop = offsets[f, row], offsets[f, row + 1]
        if kind == _DIGITS:
            length = stop - i
            if length < 1 or length > width:
                return f
            pad = width - length
            for k in range(pad):
                out[row, start + k] = 0x30
            for k in range(length):
                b = data[i + k]
                if b < 0x30 or b > 0x39:
                    return f
                out[row, start + pad + k] = b
            continue
        written, blank = 0, True
        while i < stop:
            b = data[i]
            if 0x20 <= b <= 0x7E:
                i += 1
            elif b == 0xEF and i + 2 < stop and data[i + 1] == 0xBD and 0xA1 <= data[i + 2] <= 0xBF:
                b = data[i + 2]
                i += 3
            elif b == 0xEF and i + 2 < stop and data[i + 1] == 0xBE and 0x80 <= data[i + 2] <= 0x9F:
                b = data[i + 2] + 0x40
                i += 3
            else:
                return f
            if b != 0x20:
                blank = False
            if written < width:
                out[row, start + written] = b
                written += 1
        if blank and nonblank[f]:
            return f
    return -1


@njit(cache=True, nogil=True, parallel=True)
def _put_records(out, template, kinds, starts, widths, required, minimum, nonblank, offsets, data, numbers,
                 valids):
    """Every row of `out` (n, 122): the `template` (the fixed bytes), then every field. Field f
    of row r is data[offsets[f, r]:offsets[f, r + 1]] (UTF-8) or numbers[f, r], null where not
    valids[f, r] (written as spaces unless required[f]). Kinds: _DIGITS (1–width ASCII digits)
    and _NUMBER (an integer ≥ minimum[f] of at most `width` digits), right-justified and
    zero-filled; _TEXT, every character a JIS X 0201 single byte (cp932: ASCII 0x20–0x7E as
    it is, half-width katakana U+FF61–FF9F, UTF-8 EF BD A1–BF and EF BE 80–9F, as A1–DF),
    the first `width` written left-justified and space-filled; with nonblank[f], not only
    spaces. Returns (row, field) of the first value that breaks its rule, or (-1, -1). Rows are
    written in parallel (the records are independent), then the first broken row is looked up."""
    n = out.shape[0]
    broken = np.empty(n, np.int64)
    for row in prange(n):
        broken[row] = _put_record(out, row, template, kinds, starts, widths, required, minimum, nonblank,
                                  offsets, data, numbers, valids)
    for row in range(n):
        if broken[row] >= 0:
            return row, broken[row]
    return -1, -1


def record_bytes(transfers: pl.LazyFrame | pl.DataFrame, *, new_code: str = "1") -> np.ndarray:
    """The data records of `transfers` (the columns of `data_records`) as cp932 bytes, each
    followed by CRLF: an (n, 122) array, row i the record of row i. The numba kernel checks
    every field and writes it straight into its slot; a value that breaks a rule stops with
    `checked_transfers`' message, which names every broken rule with examples. Tested against
    `data_record_expr` (Polars): the same bytes as its records joined by CRLF and encoded."""
    _check_new_code(new_code)
    _check_columns(transfers.collect_schema())
    frame = transfers.lazy().select(TRANSFER_COLUMNS).collect()
    n = frame.height
    out = np.empty((n, RECORD_BYTES), dtype=np.uint8)
    template = np.full(RECORD_BYTES, 0x20, dtype=np.uint8)
    fixed = {0: "2", 38: CLEARING_HOUSE, 90: new_code, 111: TRANSFER_DIVISION + IDENTIFICATION + " " * 7,
             RECORD_LENGTH: LINE_BREAK}
    for start, text in fixed.items():
        template[start:start + len(text)] = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    fields = len(_LAYOUT)
    kinds = np.empty(fields, np.int64)
    texts = [f for f, (column, _, _, kind, _) in enumerate(_LAYOUT)
             if kind == "C" or not frame.schema[column].is_integer()]
    offsets = np.zeros((fields, n + 1), np.int64)
    numbers = np.zeros((fields, n), np.int64)
    valids = np.empty((fields, n), np.bool_)
    chunks, base = [], 0
    for f, (column, _, _, kind, _) in enumerate(_LAYOUT):
        series = frame[column]
        valids[f] = series.is_not_null().to_numpy()
        if f in texts:
            kinds[f] = _TEXT if kind == "C" else _DIGITS
            column_offsets, data, _ = string_buffers(series.cast(pl.String).to_arrow())
            offsets[f] = column_offsets - column_offsets[0] + base
            chunks.append(data[column_offsets[0]:column_offsets[-1]])
            base += int(column_offsets[-1] - column_offsets[0])
        else:
            kinds[f] = _NUMBER
            numbers[f] = series.fill_null(0).cast(pl.Int64).to_numpy()
    rules = [rule for *_, rule in _LAYOUT]
    row, field = _put_records(
        out, template, kinds, np.array([f[1] for f in _LAYOUT], np.int64), np.array([f[2] for f in _LAYOUT], np.int64),
        np.array([rule != "nullable" for rule in rules]), np.array([1 if rule == "positive" else 0 for rule in rules]),
        np.array([rule == "nonblank" for rule in rules]), offsets,
        np.concatenate(chunks) if chunks else np.zeros(0, np.uint8), numbers, valids)
    odd_type = ~frame["account_type"].cast(pl.String).is_in(PAYEE_ACCOUNT_TYPES).fill_null(False)
    if row >= 0 or odd_type.any():
        checked_transfers(frame)  # raises, naming every broken rule with examples
        column = _LAYOUT[field][0] if row >= 0 else "account_type"
        example = frame[column][int(row)] if row >= 0 else frame.filter(odd_type)["account_type"][0]
        msg = f"{column} cannot be written in its field, e.g. {[_example(example)]}"
        raise TransferFileError.from_problems([msg])
    return out


def transfer_file_bytes(
    remitter: Remitter,
    transfer_date: date,
    transfers: pl.LazyFrame | pl.DataFrame,
    *,
    new_code: str = "1",
    final_newline: bool = True,
    require_business_day: bool = True,
) -> bytes:
    """Return the whole file: header, data records, trailer, end; CRLF between records.

    With `final_newline` the end record is followed by CRLF as well (what banks' result files
    look like and what most upload screens accept); without it the file ends at the end record,
    as the devture fixture does. 振込指定日 must be a bank business day (§4.2) unless
    `require_business_day` is False.
    """
    frame = transfers.lazy().collect()  # once: the records and the total read the same rows
    records = record_bytes(frame, new_code=new_code)
    return assembled_file(
        remitter, transfer_date, records, int(frame["amount_yen"].sum()),
        final_newline=final_newline, require_business_day=require_business_day,
    )


def assembled_file(
    remitter: Remitter,
    transfer_date: date,
    records: np.ndarray,
    total_yen: int,
    *,
    final_newline: bool = True,
    require_business_day: bool = True,
) -> bytes:
    """Header + `records` (rows of `record_bytes`, each with its CRLF) + trailer + end, encoded.

    Checks the transfer date and the file-level limits (trailer N(6) count, N(12) total).
    """
    if require_business_day and not reference.is_bank_business_day(transfer_date):
        msg = (f"transfer_date {transfer_date.isoformat()} is not a bank business day; "
               f"the next one is {reference.next_bank_business_day(transfer_date).isoformat()}")
        raise TransferFileError.from_problems([msg])
    trailer = trailer_record(record_count := len(records), total_yen)
    head = (header_record(remitter, transfer_date) + LINE_BREAK).encode("cp932")
    tail = (trailer + LINE_BREAK + end_record() + (LINE_BREAK if final_newline else "")).encode("cp932")
    if len(head) != RECORD_BYTES or records.shape[1:] != (RECORD_BYTES,):
        msg = f"record length must be {RECORD_LENGTH} bytes and a line break"
        raise TransferFileError.from_problems([msg])
    encoded = b"".join([head, np.ascontiguousarray(records).data, tail])
    expected_length = (record_count + 3) * RECORD_BYTES - (0 if final_newline else len(LINE_BREAK))
    if len(encoded) != expected_length:
        msg = f"the file must be {expected_length:,} bytes, got {len(encoded):,}"
        raise TransferFileError.from_problems([msg])
    return encoded


def write_transfer_file(
    path: Path,
    remitter: Remitter,
    transfer_date: date,
    transfers: pl.LazyFrame | pl.DataFrame,
    *,
    new_code: str = "1",
    final_newline: bool = True,
    require_business_day: bool = True,
) -> Path:
    """Write `transfer_file_bytes(...)` to `path` (atomically: temp file, then rename)."""
    data = transfer_file_bytes(
        remitter, transfer_date, transfers, new_code=new_code, final_newline=final_newline,
        require_business_day=require_business_day)
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
    return path
