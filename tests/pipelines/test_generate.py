"""The generator's output: contracts, realistic shares, unique keys, planted faults and truth."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from pathlib import Path

import jaconv
import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from engine import identity, kernels, schemas
from engine.synth import faults, tables
from pipelines.generate import FaultRates, GenerateReport, generate

RESIDENTS = 200_000
CHUNK_HOUSEHOLDS = 30_000  # several chunks, so cross-chunk uniqueness is exercised
CONTRACTS = {
    "residents": schemas.RESIDENTS, "accounts": schemas.ACCOUNTS, "applications": schemas.APPLICATIONS,
    "wallets": schemas.WALLETS, "transactions": schemas.TRANSACTIONS,
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerateReport]:
    out = tmp_path_factory.mktemp("generated")
    return out, generate(RESIDENTS, seed=7, out=out, chunk_households=CHUNK_HOUSEHOLDS)


def read(out: Path, name: str) -> pl.DataFrame:
    if name in CONTRACTS:
        return pl.read_parquet(out / name / "*.parquet")
    if name == "truth":
        return pl.read_parquet(out / "truth" / "faults.parquet")
    return pl.read_parquet(out / f"{name}.parquet")


def truth_of(out: Path, fault: str) -> pl.DataFrame:
    return read(out, "truth").filter(pl.col("fault") == fault)


def normalised(name: pl.Expr) -> pl.Expr:
    """Full-width katakana without spaces (what an engine's name normalisation yields)."""
    return name.map_batches(
        lambda s: pl.Series([jaconv.hira2kata(jaconv.h2z(v, kana=True)) for v in s.to_list()]),
        return_dtype=pl.String,
    ).str.replace_all(r"[ \u3000]", "")


def test_every_dataset_matches_its_contract(generated) -> None:
    out, _ = generated
    for name, contract in CONTRACTS.items():
        assert pl.scan_parquet(out / name / "*.parquet").collect_schema() == contract.schema, name
    assert pl.scan_parquet(out / "services.parquet").collect_schema() == schemas.SERVICES.schema
    assert pl.scan_parquet(out / "truth" / "faults.parquet").collect_schema() == schemas.TRUTH_FAULTS.schema


def test_report_counts_rows_and_faults(generated) -> None:
    out, report = generated
    for name in CONTRACTS:
        assert report.rows[name] == read(out, name).height
    assert set(report.faults) == set(faults.ALL_FAULT_KINDS)
    assert report.chunks > 1
    residents = read(out, "residents")
    copies = report.faults["duplicate_registration"] // 2 + report.faults["fuzzy_duplicate_person"] // 2
    assert residents.height == RESIDENTS + copies


def test_households_look_like_the_2020_census(generated) -> None:
    residents = read(generated[0], "residents")
    sizes = residents.group_by("household_id").len()["len"]
    assert 2.15 <= sizes.mean() <= 2.27
    assert 0.36 <= (sizes == 1).mean() <= 0.40
    age = (tables.BASIS_DAY - residents["birth_date"].cast(pl.Int32)) / 365.2425
    assert abs((age < 15).mean() - 0.1214) < 0.01
    assert abs((age >= 65).mean() - 0.2868) < 0.01
    assert abs((residents["sex"] == "F").mean() - 0.515) < 0.01


def test_prefectures_follow_census_shares(generated) -> None:
    residents = read(generated[0], "residents")
    share = residents.group_by(pl.col("municipality_code").str.slice(0, 2).alias("p")).len()
    got = dict(zip(share["p"], share["len"] / residents.height))
    total = sum(tables.PREFECTURE_POPULATION_2020.values())
    for prefecture, population in tables.PREFECTURE_POPULATION_2020.items():
        assert abs(got.get(prefecture, 0.0) - population / total) < 0.006, prefecture


def test_one_adult_head_and_shared_municipality_per_household(generated) -> None:
    residents = read(generated[0], "residents")
    per_household = residents.group_by("household_id").agg(
        heads=pl.col("is_head").sum(),
        municipalities=pl.col("municipality_code").n_unique(),
        head_birth=pl.col("birth_date").filter(pl.col("is_head")).first(),
    )
    assert (per_household["heads"] == 1).all()
    assert (per_household["municipalities"] == 1).all()
    assert (per_household["head_birth"] <= date(2002, 4, 27)).all()


def test_family_members_share_the_heads_surname(generated) -> None:
    out, _ = generated
    residents = read(out, "residents")
    copied = truth_of(out, "duplicate_registration")["my_number"].to_list() + truth_of(
        out, "fuzzy_duplicate_person")["my_number"].to_list()
    heads = residents.filter("is_head").select("household_id", head_surname="family_name_kana")
    members = residents.join(heads, on="household_id").filter(~pl.col("my_number").is_in(copied))
    assert (members["family_name_kana"] == members["head_surname"]).all()


def test_my_numbers_valid_and_unique_except_planted(generated) -> None:
    out, _ = generated
    residents = read(out, "residents")
    valid = kernels.my_number_is_valid(residents["my_number"].to_numpy())
    invalid = set(truth_of(out, "invalid_my_number")["my_number"])
    assert set(residents["my_number"].filter(~valid)) == invalid
    repeated = residents.group_by("my_number").len().filter(pl.col("len") > 1)
    assert set(repeated["my_number"]) == set(truth_of(out, "duplicate_registration")["my_number"])
    assert (repeated["len"] == 2).all()
    assert residents["household_id"].is_not_null().all()


def test_persons_sharing_name_key_birth_date_and_sex_across_households_are_all_in_the_truth(generated) -> None:
    """The truth's namesakes are the pairs the fuzzy identity check matches: names equal once
    normalised for matching (identity.name_key), one birth date, one sex, two households."""
    out, _ = generated
    key = ["family_key", "given_key", "birth_date", "sex"]
    residents = read(out, "residents").select(
        "household_id", "my_number", "birth_date", "sex",
        family_key=identity.name_key(pl.col("family_name_kana")),
        given_key=identity.name_key(pl.col("given_name_kana")),
    )
    pairs = residents.join(residents, on=key, suffix="_other").filter(
        (pl.col("my_number") != pl.col("my_number_other")) & (pl.col("household_id") != pl.col("household_id_other")))
    partners = pairs.group_by("household_id", "my_number").agg(partners=pl.col("my_number_other").n_unique())
    namesakes = truth_of(out, "coincidental_namesake")
    fuzzy = truth_of(out, "fuzzy_duplicate_person")
    assert namesakes.height > 0
    # every listed row has such a partner, and a planted fuzzy duplicate one besides its twin
    listed = namesakes.join(partners, on=["household_id", "my_number"], how="left")
    assert listed["partners"].is_not_null().all()
    assert (listed.join(fuzzy, on=["household_id", "my_number"], how="semi")["partners"] >= 2).all()
    # every person with a partner is in the truth (a My Number in two households under one of them)
    assert set(pairs["my_number"]) <= set(namesakes["my_number"]) | set(fuzzy["my_number"])


def test_dates_are_in_order(generated) -> None:
    residents = read(generated[0], "residents")
    assert (residents["registered_on"] >= residents["birth_date"]).all()
    assert (residents["registered_on"] <= date(2020, 12, 31)).all()
    died = residents.filter(pl.col("died_on").is_not_null())
    assert (died["died_on"] > died["registered_on"]).all()
    natural = died.filter(pl.col("died_on") >= date(2020, 4, 27))
    assert 0.006 <= natural.height / residents.height <= 0.014
    assert natural["is_head"].sum() > 0  # the "new head" rule is exercised


def test_accounts_cover_about_half_of_residents(generated) -> None:
    out, _ = generated
    accounts, residents = read(out, "accounts"), read(out, "residents")
    assert 0.45 <= accounts.height / residents.height <= 0.52
    assert accounts["my_number"].is_unique().all()
    assert accounts["account_number"].str.contains(r"^\d{7}$").all()
    assert (accounts["linked_on"] <= date(2020, 9, 30)).all()
    assert 0.8 <= (accounts["linked_on"] < date(2020, 4, 27)).mean() <= 0.95


def test_only_planted_groups_share_an_account(generated) -> None:
    out, _ = generated
    key = ["bank_code", "branch_code", "account_type", "account_number"]
    residents = read(out, "residents").select("my_number", "household_id").unique("my_number")
    linked = read(out, "accounts").join(residents, on="my_number").select(*key, "household_id")
    applied = read(out, "applications").select(*key, "household_id")
    shared = (
        pl.concat([linked, applied]).unique().group_by(key).agg(pl.col("household_id"))
        .filter(pl.col("household_id").list.len() > 1)
    )
    planted = truth_of(out, "shared_account")
    assert set(shared["household_id"].explode()) == set(planted["household_id"])
    assert shared["household_id"].list.len().is_between(3, 5).all()


def test_holder_names_are_variants_of_the_owners_name(generated) -> None:
    out, _ = generated
    mismatched = truth_of(out, "holder_name_mismatch")["my_number"]
    unknown = truth_of(out, "unknown_bank")["my_number"]
    residents = read(out, "residents").unique("my_number", keep="first")
    accounts = read(out, "accounts").join(residents, on="my_number").with_columns(
        written=normalised(pl.col("holder_name_kana")),
        expected=pl.col("family_name_kana") + pl.col("given_name_kana"),
    )
    clean = accounts.filter(~pl.col("my_number").is_in(mismatched))
    assert (clean["written"] == clean["expected"]).all()
    assert clean["holder_name_kana"].n_unique() < clean.height
    assert clean["holder_name_kana"].str.contains("\u3000").any()
    assert clean["holder_name_kana"].str.contains("[ｱ-ﾝ]").any()
    wrong = accounts.filter(pl.col("my_number").is_in(mismatched))
    assert (wrong["written"] != wrong["expected"]).all()
    assert set(accounts.filter(pl.col("bank_code") == "9998")["my_number"]) == set(unknown)


def test_applications_come_from_heads_without_a_usable_account(generated) -> None:
    out, _ = generated
    applications, residents = read(out, "applications"), read(out, "residents")
    assert applications["application_id"].is_unique().all()
    heads = residents.filter("is_head").select("household_id", head="my_number")
    with_head = applications.join(heads, on="household_id", how="left")
    assert with_head["head"].is_not_null().all()
    not_head = with_head.filter(pl.col("applicant_my_number") != pl.col("head"))
    assert set(not_head["application_id"]) == set(truth_of(out, "applicant_not_head")["application_id"])
    several = applications.group_by("household_id").len().filter(pl.col("len") > 1)
    planted = pl.concat([truth_of(out, "duplicate_application_same_account"),
                         truth_of(out, "conflicting_applications")])
    assert set(several["household_id"]) == set(planted["household_id"])
    assert (applications["received_on"].is_between(date(2020, 5, 1), date(2020, 8, 31))).all()
    assert 0.65 <= (applications["channel"] == "mail").mean() <= 0.85
    declined = applications.filter(pl.col("declined_my_numbers").list.len() > 0)
    assert 0 < declined.height < 0.01 * applications.height
    # heads without a linked account: about 90% apply
    linked = set(read(out, "accounts").filter(pl.col("bank_code") != "9998")["my_number"])
    without = heads.filter(~pl.col("head").is_in(linked))
    share = without["household_id"].is_in(applications["household_id"]).mean()
    assert 0.87 <= share <= 0.93


def test_duplicate_and_conflicting_applications(generated) -> None:
    out, _ = generated
    key = ["bank_code", "branch_code", "account_type", "account_number"]
    applications = read(out, "applications")
    for fault, accounts_per_household in (("duplicate_application_same_account", 1), ("conflicting_applications", 2)):
        rows = applications.join(truth_of(out, fault).select("application_id"), on="application_id")
        assert rows.height == truth_of(out, fault).height > 0
        distinct = rows.group_by("household_id").agg(pl.struct(key).n_unique().alias("n"))
        assert (distinct["n"] == accounts_per_household).all(), fault


def test_wallets_and_transactions(generated) -> None:
    out, _ = generated
    wallets, transactions = read(out, "wallets"), read(out, "transactions")
    residents = read(out, "residents")
    assert 0.17 <= wallets.height / residents.height <= 0.23
    assert wallets["wallet_id"].is_unique().all()
    assert transactions["transaction_id"].is_unique().all()
    assert 7.0 <= transactions.height / wallets.height <= 9.5
    second = truth_of(out, "second_wallet")
    repeated = wallets.group_by("my_number").len().filter(pl.col("len") > 1)
    assert set(repeated["my_number"]) == set(second["my_number"])
    assert transactions["wallet_id"].is_in(wallets["wallet_id"]).all()
    normal = transactions.filter(pl.col("kind") != "refund")
    assert normal["amount_yen"].is_between(500, 50_000).all()
    assert (transactions["kind"] == "refund").mean() < 0.04


def test_refunds_follow_their_transaction(generated) -> None:
    transactions = read(generated[0], "transactions")
    refunds = transactions.filter(pl.col("kind") == "refund")
    originals = transactions.select(refund_of="transaction_id", original_wallet="wallet_id",
                                    original_at="occurred_at", original_amount="amount_yen")
    joined = refunds.join(originals, on="refund_of", how="left")
    assert joined["original_wallet"].is_not_null().all()
    assert (joined["wallet_id"] == joined["original_wallet"]).all()
    assert (joined["occurred_at"] > joined["original_at"]).all()
    total = joined.group_by("refund_of").agg(pl.col("amount_yen").sum(), pl.col("original_amount").first())
    assert (total["amount_yen"] <= total["original_amount"]).all()
    assert (total["amount_yen"] < total["original_amount"]).any()
    assert (joined.group_by("refund_of").len()["len"] == 2).any()


def test_transactions_outside_window_or_before_registration_are_exactly_the_planted(generated) -> None:
    out, _ = generated
    transactions = read(out, "transactions").join(read(out, "wallets"), on="wallet_id")
    odd = transactions.filter(pl.col("kind") != "refund").with_columns(
        outside=~pl.col("occurred_at").is_between(datetime(2020, 9, 1), datetime(2022, 1, 1), closed="left"),
        before=pl.col("occurred_at") < pl.col("registered_on").cast(pl.Datetime("us")),
    )
    assert set(odd.filter("outside")["transaction_id"]) == set(
        truth_of(out, "transaction_outside_window")["transaction_id"])
    assert set(odd.filter(pl.col("before") & ~pl.col("outside"))["transaction_id"]) == set(
        truth_of(out, "transaction_before_registration")["transaction_id"])


def test_refund_cycling_wallets_cycle_at_least_three_times(generated) -> None:
    out, _ = generated
    transactions = read(out, "transactions")
    refunds_per_wallet = transactions.filter(pl.col("kind") == "refund").group_by("wallet_id").agg(
        pl.col("refund_of").n_unique().alias("refunded"))
    cycling = refunds_per_wallet.filter(pl.col("refunded") >= 3)
    assert set(cycling["wallet_id"]) == set(truth_of(out, "refund_cycling")["wallet_id"])


def test_truth_points_at_existing_rows(generated) -> None:
    out, _ = generated
    truth = read(out, "truth")
    residents = read(out, "residents")
    people = set(zip(residents["household_id"], residents["my_number"]))
    on_register = truth.filter(pl.col("dataset") == "residents")
    assert set(zip(on_register["household_id"], on_register["my_number"])) <= people
    assert set(truth["household_id"].drop_nulls()) <= set(residents["household_id"])
    assert set(truth["my_number"].drop_nulls()) <= set(residents["my_number"])
    assert set(truth["application_id"].drop_nulls()) <= set(read(out, "applications")["application_id"])
    assert set(truth["wallet_id"].drop_nulls()) <= set(read(out, "wallets")["wallet_id"])
    assert set(truth["transaction_id"].drop_nulls()) <= set(read(out, "transactions")["transaction_id"])
    assert truth["fault"].is_in(list(faults.ALL_FAULT_KINDS)).all()
    assert set(truth.filter(pl.col("dataset") == "accounts")["my_number"]) <= set(read(out, "accounts")["my_number"])


def test_each_planted_household_carries_one_fault(generated) -> None:
    out, _ = generated
    household_faults = read(out, "truth").filter(pl.col("household_id").is_not_null()).filter(
        pl.col("fault").is_in(list(schemas.FAULT_KINDS)))
    kinds = household_faults.group_by("household_id").agg(pl.col("fault").unique())
    combined = kinds.filter(pl.col("fault").list.len() > 1)["fault"].list.sort().to_list()
    assert all(pair == ["holder_name_mismatch", "shared_account"] for pair in combined)


def test_planted_faults_come_at_about_their_rates(generated) -> None:
    out, report = generated
    households = read(out, "residents")["household_id"].n_unique()
    rates = FaultRates()
    per_case = {"duplicate_registration": 2, "fuzzy_duplicate_person": 2, "duplicate_application_same_account": 2,
                "conflicting_applications": 2, "shared_account": 4}
    for kind in schemas.FAULT_KINDS:
        if kind == "holder_name_mismatch":
            continue  # also written for every non-owner household of a shared account
        expected = getattr(rates, kind) * households * per_case.get(kind, 1)
        assert 0.5 * expected <= report.faults[kind] <= 1.5 * expected, kind
    for kind in faults.POINTS_FAULT_KINDS:
        assert report.faults[kind] >= 5, kind
    assert report.faults["coincidental_namesake"] < 0.001 * RESIDENTS


def test_planted_households_are_payable_and_never_die_naturally(generated) -> None:
    out, _ = generated
    truth, residents = read(out, "truth"), read(out, "residents")
    planted = truth.filter(pl.col("fault").is_in(list(schemas.FAULT_KINDS)))["household_id"].unique()
    natural = residents.filter(pl.col("died_on") >= date(2020, 4, 27))
    assert not natural["household_id"].is_in(planted.implode()).any()
    heads = residents.filter(pl.col("is_head") & pl.col("household_id").is_in(planted.implode()))
    linked = read(out, "accounts").filter(pl.col("bank_code") != "9998")["my_number"]
    applied = read(out, "applications")["household_id"]
    payable = pl.col("my_number").is_in(linked.implode()) | pl.col("household_id").is_in(applied.implode())
    assert heads.select(payable.all()).item()


def digests(out: Path) -> dict[str, str]:
    """SHA-256 of every file under `out`, by its path relative to `out`."""
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    first = generate(20_000, seed=3, out=tmp_path / "a", chunk_households=4_000)
    second = generate(20_000, seed=3, out=tmp_path / "b", chunk_households=4_000)
    other = generate(20_000, seed=4, out=tmp_path / "c", chunk_households=4_000)
    assert first.rows == second.rows
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    assert digests(tmp_path / "a")["residents/part-00000.parquet"] != digests(tmp_path / "c")["residents/part-00000.parquet"]


def test_same_seed_gives_identical_files_whatever_breaks_sort_ties(tmp_path: Path, monkeypatch) -> None:
    """numpy's default (unstable) sort orders equal keys as the CPU's sorting code does (AVX-512
    and AVX2 differ): with ties broken the other way round, the files must not change."""
    argsort = np.argsort

    def ties_last_first(a, axis=-1, kind=None, order=None):
        a = np.asarray(a)
        if kind in ("stable", "mergesort") or a.ndim != 1:
            return argsort(a, axis=axis, kind=kind, order=order)
        return a.size - 1 - argsort(a[::-1], kind="stable")

    generate(20_000, seed=3, out=tmp_path / "a", chunk_households=4_000, workers=1)
    monkeypatch.setattr(np, "argsort", ties_last_first)
    generate(20_000, seed=3, out=tmp_path / "b", chunk_households=4_000, workers=1)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")


def test_chunks_generated_in_worker_processes_give_the_same_files(tmp_path: Path) -> None:
    one = generate(20_000, seed=3, out=tmp_path / "a", chunk_households=2_000, workers=1)
    two = generate(20_000, seed=3, out=tmp_path / "b", chunk_households=2_000, workers=2)
    assert one.chunks == two.chunks > 2
    assert one.rows == two.rows
    assert digests(tmp_path / "a") == digests(tmp_path / "b")


def test_kyufu_generate_uses_every_usable_core_unless_told(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from engine.cli import app
    from pipelines import generate as generator

    asked = []
    monkeypatch.setattr(generator, "generate", lambda **kw: asked.append(kw["workers"]) or GenerateReport(
        rows={}, faults={}, chunks=1, seconds=0.0, cpu_seconds=0.0))
    monkeypatch.setattr(generator, "usable_cores", lambda: 5)
    runner = CliRunner()
    assert runner.invoke(app, ["generate", "--residents", "10", "--out", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["generate", "--residents", "10", "--out", str(tmp_path), "--workers", "1"]).exit_code == 0
    bad = runner.invoke(app, ["generate", "--residents", "10", "--out", str(tmp_path), "--workers", "0"])
    assert asked == [5, 1]
    assert bad.exit_code != 0


def test_rerun_into_the_same_folder_replaces_the_parts(tmp_path: Path) -> None:
    generate(5_000, seed=1, out=tmp_path, chunk_households=1_000)
    report = generate(5_000, seed=1, out=tmp_path, chunk_households=2_000)
    assert len(list((tmp_path / "residents").glob("*.parquet"))) == report.chunks
    assert read(tmp_path, "residents").height == report.rows["residents"]


def test_fault_rates_are_strict_and_frozen() -> None:
    with pytest.raises(ValidationError, match="extra"):
        FaultRates(invalid_my_numbers=0.01)
    with pytest.raises(ValidationError):
        FaultRates(shared_account=-0.1)
    rates = FaultRates()
    with pytest.raises(ValidationError):
        rates.unknown_bank = 0.5  # type: ignore[misc]


def test_zero_rates_plant_nothing(tmp_path: Path) -> None:
    rates = FaultRates(**{name: 0.0 for name in FaultRates.model_fields})
    report = generate(3_000, seed=2, out=tmp_path, rates=rates)
    assert sum(v for k, v in report.faults.items() if k != "coincidental_namesake") == 0
    residents = read(tmp_path, "residents")
    assert kernels.my_number_is_valid(residents["my_number"].to_numpy()).all()
    assert residents["my_number"].is_unique().all()
