"""engine.zengin: byte-exact golden files (devture), and every written file through the independent
validator in tests/zengin_validator.py (written from research §4, sharing no code with the writer).
"""

from __future__ import annotations

import importlib.util
import sys
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine import kana, reference, zengin

TESTS = Path(__file__).resolve().parents[1]
GOLDEN = TESTS / "golden" / "zengin"


def _load_validator():
    # tests/ is not a package and not on sys.path; load the validator module by file name.
    name = "zengin_validator"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TESTS / "zengin_validator.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


validator = _load_validator()

# devture/zengin-generator tests/ZenginGeneratorTest.php setUp()
DEVTURE_REMITTER = zengin.Remitter(
    code="1234560789",
    name_kana="ｽﾗﾋﾞ",
    bank_code="0009",
    bank_name_kana="ﾐﾂｲｽﾐﾄﾓ",
    branch_code="825",
    branch_name_kana="ｱｶｻｶ",
    account_type="1",
    account_number="9876543",
)
TRANSFER_SCHEMA = {
    "bank_code": pl.String,
    "bank_name_kana": pl.String,
    "branch_code": pl.String,
    "branch_name_kana": pl.String,
    "account_type": pl.String,
    "account_number": pl.String,
    "payee_name_kana": pl.String,
    "amount_yen": pl.Int64,
    "customer_code_1": pl.Int64,
    "customer_code_2": pl.Int64,
}
# Names passed through unchanged: the fixture was written by devture's own normaliser and keeps
# ｰ; the writer only enforces JIS X 0201 single bytes (see tests/golden/zengin/README.md).
DEVTURE_TOKYO_TOMIN = {
    "bank_code": "0137",
    "bank_name_kana": "ﾄｳｷﾖｳﾄﾐﾝ",
    "branch_code": "031",
    "branch_name_kana": "ｼﾌﾞﾔ",
    "account_type": "1",
    "account_number": "1231990",
    "payee_name_kana": "ﾃｽﾄｰ.ｶﾌﾞｼｷｶﾞｲｼﾔ",
    "amount_yen": 1103661,
    "customer_code_1": None,
    "customer_code_2": None,
}
DEVTURE_MUFG = {
    "bank_code": "0005",
    "bank_name_kana": "ﾐﾂﾋﾞｼﾄｳｷﾖｳUFJ",
    "branch_code": "024",
    "branch_name_kana": "ｷﾞﾝｻﾞﾄﾞｵﾘ",
    "account_type": "1",
    "account_number": "2275535",
    "payee_name_kana": "ｶ)ｾﾞﾝｷﾞﾝ",
    "amount_yen": 599300,
    "customer_code_1": None,
    "customer_code_2": None,
}


def transfers_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=TRANSFER_SCHEMA)


# --- golden files ---------------------------------------------------------------------------------


def test_single_transaction_matches_devture_fixture_byte_for_byte() -> None:
    expected = (GOLDEN / "single-transaction.txt").read_bytes()
    got = zengin.transfer_file_bytes(
        DEVTURE_REMITTER, date(2016, 2, 25), transfers_frame([DEVTURE_TOKYO_TOMIN]),
        new_code="0", final_newline=False)
    assert len(got) == 4 * 122 - 2
    for number, (g, e) in enumerate(zip(got.split(b"\r\n"), expected.split(b"\r\n")), start=1):
        assert g == e, f"record {number} differs"
    assert got == expected


def test_multi_transaction_matches_devture_fixture_byte_for_byte() -> None:
    first = {**DEVTURE_TOKYO_TOMIN, "account_type": "2"}  # TYPE_CURRENT in the upstream test
    got = zengin.transfer_file_bytes(
        DEVTURE_REMITTER, date(2016, 3, 12), transfers_frame([first, DEVTURE_MUFG]),
        new_code="0", final_newline=False, require_business_day=False)  # upstream used a Saturday
    assert got == (GOLDEN / "multi-transaction.txt").read_bytes()


def test_empty_file_matches_devture_fixture_byte_for_byte() -> None:
    got = zengin.transfer_file_bytes(
        DEVTURE_REMITTER, date(2016, 2, 25), transfers_frame([]), final_newline=False)
    assert got == (GOLDEN / "empty.txt").read_bytes()


def test_final_newline_appends_crlf_after_the_end_record() -> None:
    got = zengin.transfer_file_bytes(
        DEVTURE_REMITTER, date(2016, 2, 25), transfers_frame([DEVTURE_TOKYO_TOMIN]), new_code="0")
    assert got == (GOLDEN / "single-transaction.txt").read_bytes() + b"\r\n"
    assert len(got) == 4 * 122


def test_validator_accepts_golden_files_and_reports_the_long_mark() -> None:
    data = (GOLDEN / "single-transaction.txt").read_bytes()
    lenient = validator.validate_transfer_file(data, names_safe=False)
    assert lenient.errors == []
    assert lenient.transfer_dates == ["0225"]
    assert lenient.total_yen == 1103661
    assert lenient.data_records[0]["payee_name"] == "ﾃｽﾄｰ.ｶﾌﾞｼｷｶﾞｲｼﾔ".ljust(30)
    assert lenient.data_records[0]["customer_code_1"] == " " * 10
    strict = validator.validate_transfer_file(data)
    assert len(strict.errors) == 1
    assert "payee_name" in strict.errors[0] and "ｰ" in strict.errors[0]
    multi = validator.validate_transfer_file(
        (GOLDEN / "multi-transaction.txt").read_bytes(), names_safe=False)
    assert multi.errors == []
    assert (multi.record_count, multi.total_yen) == (5, 1702961)


def test_record_builders_match_the_fixture_lines() -> None:
    lines = (GOLDEN / "single-transaction.txt").read_bytes().decode("cp932").split("\r\n")
    assert zengin.header_record(DEVTURE_REMITTER, date(2016, 2, 25)) == lines[0]
    records = zengin.data_records(transfers_frame([DEVTURE_TOKYO_TOMIN]), new_code="0")
    assert records.to_list() == [lines[1]]
    assert zengin.trailer_record(1, 1103661) == lines[2]
    assert zengin.end_record() == lines[3]


# --- a realistic file through the independent validator -------------------------------------------

FAMILY = ["やまだ", "さとう", "すずき", "たかはし", "たなか", "いとう", "わたなべ", "なかむら",
          "こばやし", "かとう", "しょうじ", "おおの", "にっとう", "ヴィラ", "ｼﾞｮｰﾝｽﾞ"]
GIVEN = ["たろう", "はなこ", "しょうご", "きょうこ", "りょう", "ゆうき", "けんじ", "をさむ",
         "ジョージ", "Ｍａｒｙ", "ｱﾝﾅ"]


def random_transfers(n: int, seed: int) -> pl.DataFrame:
    """`n` seeded payees at real branches, names normalised with engine.kana."""
    rng = np.random.default_rng(seed)
    branches = reference.branches().join(reference.banks(), on="bank_code")
    picked = branches[rng.integers(0, branches.height, size=n)]
    amounts = np.where(rng.random(n) < 0.9, 100_000, rng.integers(1, 2_000_000, size=n))
    customer_code = pl.Series(rng.integers(0, 10**10, size=n)).set(
        pl.Series(rng.random(n) < 0.2), None)
    raw_names = [f"{FAMILY[a]}　{GIVEN[b]}" for a, b in zip(
        rng.integers(0, len(FAMILY), size=n), rng.integers(0, len(GIVEN), size=n))]
    return picked.with_columns(raw_name=pl.Series(raw_names)).select(
        "bank_code", "bank_name_kana", "branch_code", "branch_name_kana",
        account_type=pl.Series(rng.choice(["1", "2", "4"], size=n, p=[0.9, 0.08, 0.02])),
        account_number=pl.Series(rng.integers(1, 10**7, size=n)).cast(pl.String),
        payee_name_kana=kana.zengin_name_expr(pl.col("raw_name")),
        amount_yen=pl.Series(amounts, dtype=pl.Int64),
        customer_code_1=customer_code,
        customer_code_2=pl.Series(np.arange(n), dtype=pl.Int64),
    )


def test_ten_thousand_payees_pass_the_independent_validator(tmp_path: Path) -> None:
    transfers = random_transfers(10_000, seed=0)
    path = zengin.write_transfer_file(
        tmp_path / "transfers.txt", DEVTURE_REMITTER, date(2020, 6, 1), transfers.lazy())
    data = path.read_bytes()
    assert len(data) == (10_000 + 3) * 122
    result = validator.validate_transfer_file(data)
    assert result.errors == []
    assert result.final_newline and result.line_break == "CRLF"
    assert result.transfer_dates == ["0601"]
    assert len(result.data_records) == 10_000
    assert result.total_yen == transfers["amount_yen"].sum()
    parsed = pl.DataFrame(result.data_records)
    assert parsed["payee_name"].str.strip_chars_end(" ").to_list() == (
        transfers["payee_name_kana"].to_list())
    assert parsed["amount_yen"].cast(pl.Int64).to_list() == transfers["amount_yen"].to_list()
    assert parsed["account_number"].cast(pl.Int64).to_list() == (
        transfers["account_number"].cast(pl.Int64).to_list())
    expected_code = transfers["customer_code_1"].cast(pl.String).str.pad_start(10, "0")
    assert parsed["customer_code_1"].to_list() == expected_code.fill_null(" " * 10).to_list()
    assert set(parsed["new_code"]) == {"1"}
    assert set(parsed["transfer_division"]) == {"7"}


# --- bad input raises one clear error naming the field and an example ------------------------------


def one_transfer(**overrides) -> pl.DataFrame:
    return transfers_frame([{**DEVTURE_MUFG, **overrides}])


@pytest.mark.parametrize(
    ("overrides", "field", "example"),
    [
        ({"payee_name_kana": "山田ﾀﾛｳ"}, "payee_name_kana", "山田ﾀﾛｳ"),
        ({"payee_name_kana": "ヤマダ"}, "payee_name_kana", "ヤマダ"),  # full-width: not normalised
        ({"payee_name_kana": "   "}, "payee_name_kana", "   "),
        ({"payee_name_kana": None}, "payee_name_kana", "None"),
        ({"bank_name_kana": "三菱UFJ"}, "bank_name_kana", "三菱UFJ"),
        ({"amount_yen": 0}, "amount_yen", "0"),
        ({"amount_yen": -5}, "amount_yen", "-5"),
        ({"amount_yen": 10_000_000_000}, "amount_yen", "10000000000"),
        ({"amount_yen": None}, "amount_yen", "None"),
        ({"account_number": "12345678"}, "account_number", "12345678"),
        ({"account_number": "12-345"}, "account_number", "12-345"),
        ({"bank_code": "A005"}, "bank_code", "A005"),
        ({"branch_code": None}, "branch_code", "None"),
        ({"account_type": "3"}, "account_type", "3"),
        ({"customer_code_1": -1}, "customer_code_1", "-1"),
        ({"customer_code_2": 10**10}, "customer_code_2", "10000000000"),
    ],
)
def test_bad_field_raises_naming_field_and_example(overrides: dict, field: str,
                                                   example: str) -> None:
    with pytest.raises(ValueError, match=field) as excinfo:
        zengin.transfer_file_bytes(DEVTURE_REMITTER, date(2020, 6, 1), one_transfer(**overrides))
    assert example in str(excinfo.value)
    assert isinstance(excinfo.value, zengin.TransferFileError)


def test_a_my_number_shaped_value_is_never_echoed() -> None:
    with pytest.raises(ValueError, match="customer_code_1") as excinfo:
        zengin.data_records(one_transfer(customer_code_1=123456789018))
    assert "123456789018" not in str(excinfo.value)
    assert "withheld" in str(excinfo.value)


def test_every_broken_rule_is_reported_at_once() -> None:
    bad = one_transfer(payee_name_kana="山田", amount_yen=0, account_number="123456789")
    with pytest.raises(zengin.TransferFileError) as excinfo:
        zengin.data_records(bad)
    message = str(excinfo.value)
    assert "3 problem(s)" in message
    for field in ("payee_name_kana", "amount_yen", "account_number"):
        assert field in message
    assert "Hint:" in message


def test_total_above_twelve_digits_is_refused() -> None:
    rows = [{**DEVTURE_MUFG, "amount_yen": zengin.MAX_AMOUNT_YEN}] * 101
    with pytest.raises(ValueError, match="total amount"):
        zengin.transfer_file_bytes(DEVTURE_REMITTER, date(2020, 6, 1), transfers_frame(rows))
    ok = zengin.transfer_file_bytes(
        DEVTURE_REMITTER, date(2020, 6, 1), transfers_frame(rows[:100]))
    assert validator.validate_transfer_file(ok).total_yen == 999_999_999_900


def test_transfer_date_must_be_a_bank_business_day() -> None:
    with pytest.raises(ValueError, match="2020-05-02 is not a bank business day; the next one is 2020-05-07"):
        zengin.transfer_file_bytes(DEVTURE_REMITTER, date(2020, 5, 2), one_transfer())


def test_trailer_refuses_more_than_999999_records() -> None:
    with pytest.raises(ValueError, match="record count"):
        zengin.trailer_record(1_000_000, 100_000)


def test_data_records_are_not_limited_to_one_file() -> None:
    # outputs builds one night's records at once and splits them into files afterwards.
    rows = [{**DEVTURE_MUFG, "amount_yen": zengin.MAX_AMOUNT_YEN}] * 101
    assert zengin.data_records(transfers_frame(rows)).len() == 101


def test_missing_column_is_reported() -> None:
    with pytest.raises(ValueError, match=r"missing column\(s\): \['customer_code_2'\]"):
        zengin.data_records(one_transfer().drop("customer_code_2"))


def test_float_amount_is_refused() -> None:
    with pytest.raises(ValueError, match="amount_yen is Float64"):
        zengin.data_records(one_transfer().with_columns(pl.col("amount_yen").cast(pl.Float64)))


def test_bad_remitter_is_refused() -> None:
    with pytest.raises(ValueError, match="remitter code") as excinfo:
        zengin.Remitter(code="12345678901", name_kana="ｽﾗﾋﾞ" * 20, bank_code="0009",
                        bank_name_kana="ﾐﾂｲｽﾐﾄﾓ", branch_code="825", branch_name_kana="赤坂",
                        account_type="4", account_number="9876543")
    assert "name_kana" in str(excinfo.value) and "branch_name_kana" in str(excinfo.value)
    assert "account_type" in str(excinfo.value)


def test_customer_codes_accept_digit_strings_integers_and_nulls() -> None:
    frame = one_transfer().with_columns(
        customer_code_1=pl.lit("00123", dtype=pl.String),
        customer_code_2=pl.lit(None, dtype=pl.String),
    )
    record = zengin.data_records(frame).item()
    assert record[91:101] == "0000000123"
    assert record[101:111] == " " * 10
    record = zengin.data_records(one_transfer(customer_code_1=42)).item()
    assert record[91:101] == "0000000042"


def test_long_bank_and_branch_names_are_cut_to_fifteen() -> None:
    record = zengin.data_records(one_transfer(branch_name_kana="ｱ" * 20)).item()
    assert len(record) == 120
    assert record[23:38] == "ｱ" * 15


def test_the_record_kernel_writes_the_bytes_of_the_reference_expression() -> None:
    """record_bytes (numba) against data_record_expr (Polars) joined and encoded with Python's
    cp932 codec: every half-width katakana, ASCII, cut and padded names, nulls, codes given as
    strings or integers."""
    rng = np.random.default_rng(7)
    n = 5_000
    alphabet = [chr(c) for c in range(0x20, 0x7F)] + [chr(c) for c in range(0xFF61, 0xFFA0)]

    def names(most: int, nulls: bool) -> list[str | None]:
        out = ["".join(rng.choice(alphabet, size=rng.integers(0, most + 1))) for _ in range(n)]
        return [None if nulls and rng.random() < 0.1 else name for name in out]

    def digits(width: int) -> list[str]:
        return ["".join(rng.choice(list("0123456789"), size=rng.integers(1, width + 1))) for _ in range(n)]

    payee = [name if name.strip() else "ｱ" for name in names(40, nulls=False)]
    frame = pl.DataFrame({
        "bank_code": digits(4), "bank_name_kana": names(20, nulls=True), "branch_code": digits(3),
        "branch_name_kana": names(20, nulls=True), "account_type": rng.choice(["1", "2", "4", "9"], size=n),
        "account_number": digits(7), "payee_name_kana": payee,
        "amount_yen": rng.integers(1, zengin.MAX_AMOUNT_YEN + 1, size=n),
        "customer_code_1": pl.Series(rng.integers(0, 10**10, size=n)).scatter(list(range(0, n, 7)), None),
        "customer_code_2": [None if i % 3 else code for i, code in enumerate(digits(10))],
    })
    for new_code in zengin.NEW_CODES:
        expected = "".join(r + "\r\n" for r in zengin.data_records(frame, new_code=new_code).to_list())
        assert zengin.record_bytes(frame, new_code=new_code).tobytes() == expected.encode("cp932")
    as_ints = frame.with_columns(pl.col("bank_code", "branch_code", "account_number").cast(pl.Int64))
    assert zengin.record_bytes(as_ints).tobytes() == zengin.record_bytes(frame).tobytes()
    assert zengin.record_bytes(frame.head(0)).shape == (0, zengin.RECORD_BYTES)


BROKEN = [
    ("payee_name_kana", "ﾔﾏﾀﾞ 太郎"), ("payee_name_kana", "   "), ("payee_name_kana", None),
    ("bank_name_kana", "ﾐﾂﾋﾞｼ" * 4 + "銀行"),  # beyond the 15 characters written: still refused
    ("customer_code_1", 10**10), ("customer_code_1", -1), ("account_number", "12345678"),
    ("account_number", None), ("branch_code", "0a1"), ("bank_code", ""), ("amount_yen", 0),
    ("amount_yen", zengin.MAX_AMOUNT_YEN + 1), ("amount_yen", None),
]


@pytest.mark.parametrize(("column", "value"), BROKEN)
def test_the_record_kernel_refuses_what_the_row_checks_refuse(column: str, value, monkeypatch) -> None:
    broken = pl.concat([one_transfer(), one_transfer(**{column: value})])
    with pytest.raises(zengin.TransferFileError) as checked:
        zengin.data_records(broken)
    with pytest.raises(zengin.TransferFileError) as kernel:
        zengin.record_bytes(broken)
    assert str(kernel.value) == str(checked.value)  # the checks' message: every rule, with examples
    assert column in str(kernel.value)
    # the kernel's own rules, without the checks that name them
    monkeypatch.setattr(zengin, "checked_transfers", lambda frame: frame)
    with pytest.raises(zengin.TransferFileError, match=f"{column} cannot be written in its field"):
        zengin.record_bytes(broken)


def test_the_record_kernel_names_the_first_broken_row(monkeypatch) -> None:
    """Rows are written in parallel; the value named is still the first broken row's."""
    rows = [one_transfer()] * 3_000
    rows[2_500] = one_transfer(bank_code="")
    rows[700] = one_transfer(account_number="12345678")
    monkeypatch.setattr(zengin, "checked_transfers", lambda frame: frame)
    with pytest.raises(zengin.TransferFileError, match=r"account_number cannot be written in its field, e.g. .*12345678"):
        zengin.record_bytes(pl.concat(rows))


def test_an_account_type_outside_the_four_is_refused(monkeypatch) -> None:
    with pytest.raises(zengin.TransferFileError, match="account_type must be one of"):
        zengin.record_bytes(one_transfer(account_type="3"))
    monkeypatch.setattr(zengin, "checked_transfers", lambda frame: frame)
    with pytest.raises(zengin.TransferFileError, match="account_type cannot be written in its field, e.g. ..3"):
        zengin.record_bytes(one_transfer(account_type="3"))


# --- the validator itself catches what it should ---------------------------------------------------


def golden_single() -> bytes:
    return (GOLDEN / "single-transaction.txt").read_bytes()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.replace(b"\r\n", b"\n"), "LF-only"),
        (lambda b: b.replace(b"\r\n", b"\r"), "CR-only"),
        (lambda b: b.replace(b"001103661 ", b"001103662 "), "total_yen"),
        (lambda b: b.replace(b"8000001", b"8000002"), "record_count"),
        (lambda b: b.replace(b"0225", b"0230"), "MMDD"),
        (lambda b: b.replace(b"1210", b"1110", 1), "kind_code"),
        (lambda b: b.replace(b"000011231990", b"000031231990"), "account_type"),
        (lambda b: b.replace(b"9" + b" " * 119, b"9" + b" " * 118 + b"X"), "dummy"),
        (lambda b: b.replace(b"9" + b" " * 119, b"9" + b" " * 120), "121 bytes"),
        (lambda b: b.replace(b"\xc3\xbd\xc4\xb0", b"\x83e\x83X"), "JIS X 0201"),  # テス in SJIS
        (lambda b: b.replace(b"00011036610", b"00000000000"), "amount_yen is 0"),
        (lambda b: b.split(b"\r\n", 2)[2], "cannot follow"),  # no header
        (lambda b: b.rsplit(b"\r\n", 1)[0], "end record"),
        (lambda b: b.replace(b"0009\xd0", b" 009\xd0"), "bank_code"),
        (lambda b: b.replace(b"825\xb1\xb6\xbb\xb6 ", b"825 \xb1\xb6\xbb\xb6"), "left-justified"),
    ],
)
def test_validator_rejects_broken_files(mutate, message: str) -> None:
    broken = mutate(golden_single())
    assert broken != golden_single()
    errors = validator.validate_transfer_file(broken, names_safe=False).errors
    assert any(message in e for e in errors), errors


def test_validator_accepts_several_batches_before_one_end_record() -> None:
    records = golden_single().split(b"\r\n")
    data = b"\r\n".join(records[:3] * 2 + records[3:]) + b"\r\n\x1a"
    result = validator.validate_transfer_file(data, names_safe=False)
    assert result.errors == []
    assert len(result.batches) == 2 and result.total_yen == 2 * 1103661
