"""A hand-written night: one household per rule, each with the outcome a correct engine gives.

`write_tiny(dir)` writes the input datasets; EXPECTED maps household_id → (status, yen).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from engine import kernels

BASIS = date(2020, 4, 27)
RUN_DATE = date(2020, 6, 30)
MUNICIPALITY = "131016"  # 千代田区
OTHER_MUNICIPALITY = "011002"  # 札幌市


def my_number(n: int) -> int:
    """A valid My Number built from a small counter."""
    base = 10_000_000_000 + n
    return base * 10 + int(kernels.my_number_check_digits(np.array([base], dtype=np.int64))[0])


def bad_my_number(n: int) -> int:
    good = my_number(n)
    return good - good % 10 + (good % 10 + 1) % 10


# person: (n, household, is_head, family, given, birth, municipality, died_on, moved_out_on)
P = [
    (1, 1, True, "ヤマダ", "タロウ", date(1970, 1, 1), MUNICIPALITY, None, None),
    (2, 1, False, "ヤマダ", "ハナコ", date(1972, 2, 2), MUNICIPALITY, None, None),
    (3, 2, True, "スズキ", "イチロウ", date(1950, 3, 3), MUNICIPALITY, None, None),
    (4, 3, True, "タナカ", "ジロウ", date(1980, 4, 4), MUNICIPALITY, None, None),
    (5, 4, True, "サトウ", "ケンジ", date(1985, 5, 5), MUNICIPALITY, None, None),
    (6, 4, False, "サトウ", "ユミ", date(1986, 6, 6), MUNICIPALITY, None, None),
    (7, 4, False, "サトウ", "ソウタ", date(2020, 5, 1), MUNICIPALITY, None, None),  # born after basis
    (8, 5, True, "イトウ", "マサオ", date(1940, 1, 1), MUNICIPALITY, date(2020, 5, 10), None),  # head died
    (9, 5, False, "イトウ", "キョウコ", date(1945, 1, 1), MUNICIPALITY, None, None),
    (10, 6, True, "ワタナベ", "シゲル", date(1930, 1, 1), MUNICIPALITY, date(2020, 5, 20), None),  # alone, died
    (11, 7, True, "ナカムラ", "アキラ", date(1960, 1, 1), MUNICIPALITY, None, None),
    (12, 7, False, "ナカムラ", "ケイコ", date(1962, 1, 1), MUNICIPALITY, None, None),
    (13, 8, True, "コバヤシ", "ツヨシ", date(1975, 1, 1), MUNICIPALITY, None, None),
    (14, 9, True, "カトウ", "ヒロシ", date(1965, 1, 1), MUNICIPALITY, None, None),
    (15, 10, True, "ヨシダ", "マコト", date(1966, 1, 1), OTHER_MUNICIPALITY, None, None),
    (16, 11, True, "ヤマグチ", "サトシ", date(1967, 1, 1), OTHER_MUNICIPALITY, None, None),
    (17, 12, True, "マツモト", "ジュン", date(1990, 1, 1), MUNICIPALITY, None, None),
    (18, 13, True, "イノウエ", "カズオ", date(1955, 1, 1), OTHER_MUNICIPALITY, None, None),
    (19, 14, True, "キムラ", "タカシ", date(1958, 1, 1), MUNICIPALITY, None, None),
    (20, 15, True, "ハヤシ", "ミノル", date(1959, 1, 1), OTHER_MUNICIPALITY, None, None),
    (21, 16, True, "シミズ", "ノボル", date(1961, 1, 1), MUNICIPALITY, None, None),
    (22, 16, False, "シミズ", "トモコ", date(1963, 1, 1), MUNICIPALITY, None, None),
    (23, 17, True, "モリ", "イサム", date(1949, 1, 1), MUNICIPALITY, None, None),
    (24, 17, False, "モリ", "カナ", date(2001, 1, 1), MUNICIPALITY, None, date(2020, 3, 1)),  # moved out
    (25, 17, False, "モリ", "ダイ", date(1999, 1, 1), MUNICIPALITY, date(2020, 1, 1), None),  # died before
    # one person registered twice under two My Numbers: the names normalise to the same kana
    (27, 18, True, "オオノ", "ヲサム", date(1970, 7, 7), MUNICIPALITY, None, None),
    (29, 19, True, "ｵｵﾉ", "ｵｻﾑ", date(1970, 7, 7), OTHER_MUNICIPALITY, None, None),
]

# household 13's member 26 has an invalid My Number; household 15 also registers person 19
INVALID_MEMBER = (26, 13, False, "イノウエ", "ミキ", date(1957, 1, 1), OTHER_MUNICIPALITY, None, None)
DOUBLE = (19, 15, False, "キムラ", "タカシ", date(1958, 1, 1), OTHER_MUNICIPALITY, None, None)

MUFG = ("0005", "001")
MIZUHO = ("0001", "001")


def _acct(bank_branch, number, holder, n, linked=date(2020, 1, 10)):
    return {"my_number": my_number(n), "bank_code": bank_branch[0], "branch_code": bank_branch[1],
            "account_type": "1", "account_number": number, "holder_name_kana": holder, "linked_on": linked}


def _app(app_id, household, applicant_n, channel, bank_branch, number, holder, declined=(), received=date(2020, 5, 15)):
    return {"application_id": app_id, "household_id": household, "applicant_my_number": my_number(applicant_n),
            "channel": channel, "received_on": received, "bank_code": bank_branch[0],
            "branch_code": bank_branch[1], "account_type": "1", "account_number": number,
            "holder_name_kana": holder, "declined_my_numbers": [my_number(d) for d in declined]}


ACCOUNTS = [
    _acct(MUFG, "1000001", "ヤマダ タロウ", 1),  # household 1: clean, linked
    _acct(MUFG, "1000004", "ｻﾄｳ ｹﾝｼﾞ", 5),  # household 4: half-width holder name, same name
    _acct(MUFG, "1000014", "カトウ ヒロシ", 14),  # households 9, 10, 11 share this account
    _acct(MUFG, "1000014", "カトウ ヒロシ", 15),
    _acct(MUFG, "1000014", "カトウ ヒロシ", 16),
    _acct(MIZUHO, "2000017", "タカハシ ミチコ", 17),  # household 12: someone else's name
    _acct(MUFG, "1000018", "イノウエ カズオ", 18),  # household 13
    _acct(MUFG, "1000019", "キムラ タカシ", 19),  # person 19: double registration
    _acct(MUFG, "1000020", "ハヤシ ミノル", 20),
    _acct(MUFG, "1000023", "モリ イサム", 23),
    _acct(("9998", "001"), "3000000", "ヤマダ ハナコ", 2),  # unknown bank: rejected
    _acct(MUFG, "1000999", "ヤマダ タロウ", 1, linked=date(2020, 7, 15)),  # linked after the night
]

APPLICATIONS = [
    _app(1, 2, 3, "mail", MIZUHO, "2000002", "スズキ イチロウ"),
    _app(2, 5, 9, "mail", MIZUHO, "2000005", "イトウ キョウコ"),  # the new head applies
    _app(3, 7, 12, "online", MIZUHO, "2000007", "ナカムラ ケイコ"),  # online, not the head
    _app(4, 8, 13, "mail", MIZUHO, "2000008", "コバヤシ ツヨシ"),
    _app(5, 8, 13, "online", MIZUHO, "2000088", "コバヤシ ツヨシ"),  # different account
    _app(6, 16, 21, "mail", MIZUHO, "2000016", "シミズ ノボル", declined=(22,)),
    _app(7, 16, 21, "online", MIZUHO, "2000016", "シミズ ノボル", declined=(22,)),  # same account
    _app(8, 3, 4, "mail", MIZUHO, "2000003", "タナカ ジロウ", received=date(2020, 7, 20)),  # after the night
]

# household_id -> (status, entitled yen)
EXPECTED = {
    1: ("paid", 200_000),
    2: ("paid", 100_000),
    3: ("awaiting", 100_000),
    4: ("paid", 200_000),
    5: ("paid", 200_000),
    6: ("not_payable", 0),
    7: ("held", 200_000),
    8: ("held", 100_000),
    9: ("held", 100_000),
    10: ("held", 100_000),
    11: ("held", 100_000),
    12: ("held", 100_000),
    13: ("paid", 100_000),
    14: ("held", 100_000),
    15: ("held", 200_000),
    16: ("paid", 100_000),
    17: ("paid", 100_000),
    18: ("held", 100_000),
    19: ("held", 100_000),
}
EXPECTED_HOLDS = {
    7: ["applicant_not_head"],
    8: ["conflicting_applications"],
    9: ["shared_account"],
    10: ["holder_name_mismatch", "shared_account"],
    11: ["holder_name_mismatch", "shared_account"],
    12: ["holder_name_mismatch"],
    14: ["double_registration"],
    15: ["double_registration"],
    18: ["fuzzy_identity"],
    19: ["fuzzy_identity"],
}


def residents_frame() -> pl.DataFrame:
    rows = []
    for n, household, head, family, given, birth, municipality, died, moved in [*P, INVALID_MEMBER, DOUBLE]:
        number = bad_my_number(n) if (n, household) == (26, 13) else my_number(n)
        rows.append({
            "my_number": number, "household_id": household, "is_head": head,
            "family_name_kana": family, "given_name_kana": given, "birth_date": birth,
            "sex": "M" if n % 2 else "F", "municipality_code": municipality,
            "registered_on": max(birth, date(2000, 1, 1)), "moved_out_on": moved, "died_on": died,
        })
    return pl.DataFrame(rows, schema_overrides={"moved_out_on": pl.Date, "died_on": pl.Date})


def write_tiny(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    residents_frame().write_parquet(folder / "residents.parquet")
    pl.DataFrame(ACCOUNTS).write_parquet(folder / "accounts.parquet")
    pl.DataFrame(APPLICATIONS, schema_overrides={"declined_my_numbers": pl.List(pl.Int64)}).write_parquet(
        folder / "applications.parquet")
    return folder
