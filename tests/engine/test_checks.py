"""engine/checks.py on tiny literal nights: double registration, shared accounts, row holds.

Inputs are built as pipelines/nightly.py builds them: register rows → entitle.eligible_members →
household_entitlements and payees → payout.resolved_accounts with literal accounts and applications.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from engine import checks, entitle, payout
from engine.config import BenefitConfig, ChecksConfig
from engine.ingest import ROW

CFG = ChecksConfig()
BENEFIT = BenefitConfig()
MUFG = ("0005", "001")
MIZUHO = ("0001", "001")


def my_number(key: int) -> int:
    return 900_000_000_000 + key  # never validated here; distinct per person


def person(key: int, household: int, family: str, given: str, *, head: bool = True,
           birth: date = date(1970, 1, 1), died_on: date | None = None, eligible: bool = True,
           number: int | None = None) -> dict:
    return {
        "person_key": key, "my_number": number if number is not None else my_number(key),
        "household_id": household, "is_head": head, "family_name_kana": family, "given_name_kana": given,
        "birth_date": birth, "sex": "M" if key % 2 else "F", "municipality_code": "131016",
        "registered_on": date(2000, 1, 1) if eligible else date(2020, 6, 1),
        "moved_out_on": None, "died_on": died_on,
    }


def account(key: int, bank: tuple[str, str], number: str, holder: str) -> dict:
    return {"my_number": my_number(key), "bank_code": bank[0], "branch_code": bank[1], "account_type": "1",
            "account_number": number, "holder_name_kana": holder, "linked_on": date(2020, 1, 10)}


def application(application_id: int, household: int, applicant: int, channel: str, bank: tuple[str, str],
                number: str, holder: str, received: date = date(2020, 5, 15)) -> dict:
    return {"application_id": application_id, "household_id": household,
            "applicant_my_number": my_number(applicant), "channel": channel, "received_on": received,
            "bank_code": bank[0], "branch_code": bank[1], "account_type": "1", "account_number": number,
            "holder_name_kana": holder, "declined_my_numbers": []}


def members_of(rows: list[dict]) -> pl.LazyFrame:
    register = pl.DataFrame(rows, schema_overrides={"moved_out_on": pl.Date, "died_on": pl.Date})
    register = register.with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))
    declined = pl.LazyFrame(schema={"household_id": pl.Int64, "my_number": pl.Int64})
    return entitle.eligible_members(register.lazy(), declined, BENEFIT)


def resolved_of(rows: list[dict], accounts: list[dict] = (), applications: list[dict] = ()) -> pl.DataFrame:
    members = members_of(rows)
    account_frame = pl.DataFrame(list(accounts), schema={
        "my_number": pl.Int64, "bank_code": pl.String, "branch_code": pl.String, "account_type": pl.String,
        "account_number": pl.String, "holder_name_kana": pl.String, "linked_on": pl.Date})
    application_frame = pl.DataFrame(list(applications), schema={
        "application_id": pl.Int64, "household_id": pl.Int64, "applicant_my_number": pl.Int64,
        "channel": pl.String, "received_on": pl.Date, "bank_code": pl.String, "branch_code": pl.String,
        "account_type": pl.String, "account_number": pl.String, "holder_name_kana": pl.String,
        "declined_my_numbers": pl.List(pl.Int64)}).with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))
    return payout.resolved_accounts(
        entitle.household_entitlements(members, BENEFIT), entitle.payees(members),
        account_frame.lazy(), application_frame.lazy(),
    ).collect().sort("household_id")


def reasons(holds: pl.DataFrame) -> dict[int, list[str]]:
    grouped = holds.group_by("household_id").agg(pl.col("reason").sort()).sort("household_id")
    return dict(grouped.iter_rows())


# --- double registration ----------------------------------------------------------------------------


def test_one_my_number_in_two_households_holds_both() -> None:
    rows = [person(1, 1, "キムラ", "タカシ"), person(2, 2, "ハヤシ", "ミノル"),
            person(1, 2, "キムラ", "タカシ", head=False), person(3, 3, "モリ", "イサム")]
    held = checks.double_registrations(members_of(rows)).collect().sort("household_id")
    assert held["household_id"].to_list() == [1, 2]
    assert set(held["reason"]) == {"double_registration"}
    assert held["evidence"].to_list() == ["person 1 is registered in households 1, 2"] * 2
    assert not any(str(my_number(1)) in text for text in held["evidence"])


def test_an_ineligible_copy_is_not_a_double_registration() -> None:
    rows = [person(1, 1, "キムラ", "タカシ"), person(1, 2, "キムラ", "タカシ", eligible=False)]
    assert checks.double_registrations(members_of(rows)).collect().is_empty()


def test_a_household_with_two_double_registered_members_names_both() -> None:
    rows = [person(1, 1, "キムラ", "タカシ"), person(2, 1, "キムラ", "ヨウコ", head=False),
            person(1, 2, "キムラ", "タカシ"), person(2, 3, "キムラ", "ヨウコ")]
    held = checks.double_registrations(members_of(rows)).collect().sort("household_id")
    evidence = dict(held.select("household_id", "evidence").iter_rows())
    assert evidence[1] == ("person 1 is registered in households 1, 2; "
                           "person 2 is registered in households 1, 3")
    assert evidence[2] == "person 1 is registered in households 1, 2"


# --- shared accounts --------------------------------------------------------------------------------


def shared_by(families: list[str], *, bank: tuple[str, str] = MUFG) -> pl.DataFrame:
    """One household per family name, every payee linked to the same account."""
    rows = [person(k, k, family, "タロウ") for k, family in enumerate(families, start=1)]
    accounts = [account(k, bank, "1000001", "カトウ タロウ") for k in range(1, len(families) + 1)]
    return resolved_of(rows, accounts)


def test_related_households_may_share_an_account() -> None:
    # a child paying an elderly parent's household into the family account: one family name,
    # written once in full width and once in half width
    assert checks.shared_accounts(shared_by(["カトウ", "ｶﾄｳ"]).lazy(), CFG).collect().is_empty()


def test_three_surnames_on_one_account_are_held() -> None:
    held = checks.shared_accounts(shared_by(["カトウ", "スズキ", "タナカ"]).lazy(), CFG).collect()
    assert sorted(held["household_id"]) == [1, 2, 3]
    assert set(held["reason"]) == {"shared_account"}
    assert held["evidence"][0] == ("account 0005-001-1-1000001 receives for 3 households with 3 family "
                                   "names: 1, 2, 3")


def test_two_surnames_on_one_account_are_held_at_the_default_minimum() -> None:
    held = checks.shared_accounts(shared_by(["カトウ", "スズキ"]).lazy(), CFG).collect()
    assert sorted(held["household_id"]) == [1, 2]


def test_the_minimum_number_of_households_applies() -> None:
    strict = ChecksConfig(shared_account_min_households=3)
    assert checks.shared_accounts(shared_by(["カトウ", "スズキ"]).lazy(), strict).collect().is_empty()
    assert checks.shared_accounts(shared_by(["カトウ", "カトウ", "スズキ"]).lazy(), strict).collect().height == 3


def test_households_without_account_share_nothing() -> None:
    rows = [person(1, 1, "カトウ", "タロウ"), person(2, 2, "スズキ", "タロウ")]
    resolved = resolved_of(rows)
    assert set(resolved["account_source"]) == {"none"}
    assert checks.shared_accounts(resolved.lazy(), CFG).collect().is_empty()


def test_an_account_shared_through_an_application_counts() -> None:
    rows = [person(1, 1, "カトウ", "タロウ"), person(2, 2, "スズキ", "ジロウ")]
    resolved = resolved_of(rows, [account(1, MUFG, "1000001", "カトウ タロウ")],
                           [application(1, 2, 2, "mail", MUFG, "1000001", "カトウ タロウ")])
    held = checks.shared_accounts(resolved.lazy(), CFG).collect()
    assert sorted(held["household_id"]) == [1, 2]


# --- row holds ----------------------------------------------------------------------------------------


def test_holder_name_of_someone_else_is_held_and_the_same_name_in_half_width_is_not() -> None:
    rows = [person(1, 1, "マツモト", "ジュン"), person(2, 2, "サトウ", "ケンジ")]
    accounts = [account(1, MIZUHO, "2000017", "タカハシ ミチコ"), account(2, MUFG, "1000004", "ｻﾄｳ ｹﾝｼﾞ")]
    resolved = resolved_of(rows, accounts)
    holds = checks.row_holds(resolved, CFG)
    assert reasons(holds) == {1: ["holder_name_mismatch"]}
    assert holds["evidence"][0].startswith("holder name ﾀｶﾊｼ ﾐﾁｺ vs payee ﾏﾂﾓﾄ ｼﾞﾕﾝ (similarity ")


def test_holder_name_without_the_space_is_the_same_name() -> None:
    resolved = resolved_of([person(1, 1, "サトウ", "ケンジ")], [account(1, MUFG, "1000004", "サトウケンジ")])
    assert checks.row_holds(resolved, CFG).is_empty()


def test_online_application_by_a_member_who_is_not_head_is_held() -> None:
    rows = [person(11, 7, "ナカムラ", "アキラ"), person(12, 7, "ナカムラ", "ケイコ", head=False)]
    resolved = resolved_of(rows, applications=[
        application(3, 7, 12, "online", MIZUHO, "2000007", "ナカムラ ケイコ")])
    holds = checks.row_holds(resolved, CFG)
    # the holder is the partner: same family name, similar enough not to be a holder-name mismatch
    assert reasons(holds) == {7: ["applicant_not_head"]}
    text = holds.filter(pl.col("reason") == "applicant_not_head")["evidence"][0]
    assert text == "online application 3 was not made by the head (person 11)"


@pytest.mark.parametrize("channel, applicant", [("mail", 12), ("online", 11)], ids=["mail", "head"])
def test_a_mail_application_or_the_heads_own_is_not_applicant_not_head(channel: str, applicant: int) -> None:
    rows = [person(11, 7, "ナカムラ", "アキラ"), person(12, 7, "ナカムラ", "ケイコ", head=False)]
    resolved = resolved_of(rows, applications=[
        application(3, 7, applicant, channel, MIZUHO, "2000007", "ナカムラ アキラ")])
    assert checks.row_holds(resolved, CFG).is_empty()


def test_applications_with_two_accounts_conflict_and_with_one_do_not() -> None:
    rows = [person(13, 8, "コバヤシ", "ツヨシ"), person(21, 16, "シミズ", "ノボル")]
    resolved = resolved_of(rows, applications=[
        application(4, 8, 13, "mail", MIZUHO, "2000008", "コバヤシ ツヨシ"),
        application(5, 8, 13, "online", MIZUHO, "2000088", "コバヤシ ツヨシ"),
        application(6, 16, 21, "mail", MIZUHO, "2000016", "シミズ ノボル"),
        application(7, 16, 21, "online", MIZUHO, "2000016", "シミズ ノボル"),
    ])
    holds = checks.row_holds(resolved, CFG)
    assert reasons(holds) == {8: ["conflicting_applications"]}
    assert holds["evidence"][0] == ("2 applications carry 2 different accounts: 0001-001-1-2000008, "
                                    "0001-001-1-2000088")


def test_a_linked_account_wins_over_the_applications() -> None:
    # the payee's own linked account pays; the applications' accounts are not used, so neither
    # their number nor their applicant holds the household
    rows = [person(11, 7, "ナカムラ", "アキラ"), person(12, 7, "ナカムラ", "ケイコ", head=False)]
    resolved = resolved_of(rows, [account(11, MUFG, "1000011", "ナカムラ アキラ")], [
        application(3, 7, 12, "online", MIZUHO, "2000007", "ナカムラ ケイコ"),
        application(4, 7, 12, "mail", MIZUHO, "2000077", "ナカムラ ケイコ"),
    ])
    assert resolved["account_source"].to_list() == ["linked_account"]
    assert checks.row_holds(resolved, CFG).is_empty()


def test_the_new_head_is_paid_into_the_account_the_head_applied_with() -> None:
    # the head applied with his own account on 15 May and died on 20 May; his wife is now the
    # payee (§1.1) and the household's application gives the account (SPEC "Payee account")
    rows = [person(8, 5, "イトウ", "マサオ", birth=date(1940, 1, 1), died_on=date(2020, 5, 20)),
            person(9, 5, "イトウ", "キョウコ", head=False, birth=date(1945, 1, 1))]
    resolved = resolved_of(rows, applications=[
        application(2, 5, 8, "online", MIZUHO, "2000005", "イトウ マサオ")])
    assert resolved["payee_person_key"].to_list() == [9]
    assert resolved["account_source"].to_list() == ["application"]
    # the holder is the head who applied: not a mismatch, nor a non-head application
    assert checks.row_holds(resolved, CFG).is_empty()


def test_an_application_by_the_head_in_someone_elses_name_is_a_mismatch() -> None:
    rows = [person(8, 5, "イトウ", "マサオ", birth=date(1940, 1, 1), died_on=date(2020, 5, 20)),
            person(9, 5, "イトウ", "キョウコ", head=False, birth=date(1945, 1, 1))]
    resolved = resolved_of(rows, applications=[
        application(2, 5, 8, "mail", MIZUHO, "2000005", "タカハシ ミチコ")])
    assert reasons(checks.row_holds(resolved, CFG)) == {5: ["holder_name_mismatch"]}


def test_the_new_heads_own_application_is_paid() -> None:
    rows = [person(8, 5, "イトウ", "マサオ", birth=date(1940, 1, 1), died_on=date(2020, 5, 20)),
            person(9, 5, "イトウ", "キョウコ", head=False, birth=date(1945, 1, 1))]
    resolved = resolved_of(rows, applications=[
        application(2, 5, 9, "online", MIZUHO, "2000005", "イトウ キョウコ")])
    assert checks.row_holds(resolved, CFG).is_empty()



def test_the_new_heads_later_application_wins() -> None:
    rows = [person(8, 5, "イトウ", "マサオ", birth=date(1940, 1, 1), died_on=date(2020, 5, 20)),
            person(9, 5, "イトウ", "キョウコ", head=False, birth=date(1945, 1, 1))]
    resolved = resolved_of(rows, applications=[
        application(2, 5, 8, "online", MIZUHO, "2000005", "イトウ マサオ"),
        application(3, 5, 9, "mail", MIZUHO, "2000055", "イトウ キョウコ", received=date(2020, 6, 1)),
    ])
    assert resolved["account_number"].to_list() == ["2000055"]
    assert checks.row_holds(resolved, CFG).is_empty()


def test_row_holds_of_a_clean_night_is_an_empty_frame_with_the_hold_columns() -> None:
    resolved = resolved_of([person(1, 1, "ヤマダ", "タロウ")], [account(1, MUFG, "1000001", "ヤマダ タロウ")])
    holds = checks.row_holds(resolved, CFG)
    assert holds.is_empty()
    assert holds.columns == ["household_id", "evidence", "reason"]


# --- all together -------------------------------------------------------------------------------------


def test_with_holds_lists_sorted_reasons_and_counts_pairs() -> None:
    rows = [person(1, 1, "オオノ", "ヲサム"), person(3, 2, "ｵｵﾉ", "ｵｻﾑ", birth=date(1970, 1, 1)),
            person(5, 3, "モリ", "イサム")]
    rows[1]["sex"] = rows[0]["sex"]
    accounts = [account(1, MUFG, "1000001", "タカハシ ミチコ"), account(3, MUFG, "1000001", "オオノ オサム"),
                account(5, MUFG, "1000005", "モリ イサム")]
    resolved = resolved_of(rows, accounts)
    checked, compared = checks.with_holds(resolved, members_of(rows), CFG)
    got = dict(checked.select("household_id", "hold_reasons").sort("household_id").iter_rows())
    assert compared == 1
    # households 1 and 2 share an account but one family name: related, not held for it
    assert got == {1: ["fuzzy_identity", "holder_name_mismatch"], 2: ["fuzzy_identity"], 3: []}
    evidence = checked.filter(pl.col("household_id") == 1)["hold_evidence"][0].split("\n")
    assert [line.split(":")[0] for line in evidence] == ["fuzzy_identity", "holder_name_mismatch"]
