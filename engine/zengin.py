"""Zengin: the 総合振込 (種別コード 21) bank transfer file, 120-byte records (research §4).

transfers (one row per payee, names already normalised by engine.kana) → header + data records +
trailer + end record, CRLF-separated, JIS X 0201 single bytes (cp932). Built column-wise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from engine import reference
from engine.errors import EngineError

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
# (column, width) of each C field; left-justified, space-filled, cut to the width.
_CHARACTER_FIELDS = {"bank_name_kana": 15, "branch_name_kana": 15, "payee_name_kana": 30}
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


def _checked_transfers(transfers: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
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
    frame = _checked_transfers(transfers)
    return frame.select(data_record_expr(new_code=new_code)).to_series()


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
    _check_new_code(new_code)
    frame = _checked_transfers(transfers)
    records = frame.select(data_record_expr(new_code=new_code)).to_series()
    return assembled_file(
        remitter, transfer_date, records.str.join(LINE_BREAK).item() if frame.height else "",
        frame.height, int(frame["amount_yen"].sum()) if frame.height else 0,
        final_newline=final_newline, require_business_day=require_business_day,
    )


def assembled_file(
    remitter: Remitter,
    transfer_date: date,
    body: str,
    record_count: int,
    total_yen: int,
    *,
    final_newline: bool = True,
    require_business_day: bool = True,
) -> bytes:
    """Header + `body` (data records already joined by CRLF) + trailer + end, encoded.

    Checks the transfer date, the file-level limits (trailer N(6) count, N(12) total) and that
    every record came out as 120 single bytes.
    """
    if require_business_day and not reference.is_bank_business_day(transfer_date):
        msg = (f"transfer_date {transfer_date.isoformat()} is not a bank business day; "
               f"the next one is {reference.next_bank_business_day(transfer_date).isoformat()}")
        raise TransferFileError.from_problems([msg])
    trailer = trailer_record(record_count, total_yen)
    head = header_record(remitter, transfer_date) + LINE_BREAK
    tail = trailer + LINE_BREAK + end_record() + (LINE_BREAK if final_newline else "")
    text = head + (body + LINE_BREAK if record_count else "") + tail
    expected_length = (record_count + 3) * (RECORD_LENGTH + 2) - (0 if final_newline else 2)
    if len(text) != expected_length:
        # Only a field wider than its slot can get here; the row checks should prevent it.
        lines = text.split(LINE_BREAK)
        examples = [line for line in lines if line and len(line) != RECORD_LENGTH][:_MAX_EXAMPLES]
        msg = f"record length must be {RECORD_LENGTH}, got e.g. {examples}"
        raise TransferFileError.from_problems([msg])
    encoded = text.encode("cp932")
    if len(encoded) != expected_length:
        msg = "a record has characters that are not single bytes in cp932"
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
