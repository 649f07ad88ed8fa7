"""Vocabularies the generator draws from: names, municipalities, bank branches, services.

Each is loaded once per process. Rows of the generated data hold integer indices into these
vocabularies; strings are materialised only when a frame is built (`Series.gather`).
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources

import jaconv
import numpy as np
import polars as pl

from engine import reference
from engine.synth import tables

SMALL_KANA = "ァィゥェォッャュョヮ"
# a kana and the kana one voicing mark away (カ↔ガ): a plausible one-character misreading
VOICED_PAIRS = dict(zip("カキクケコサシスセソタチツテトハヒフヘホ", "ガギグゲゴザジズゼゾダヂヅデドバビブベボ"))
VOICED_PAIRS |= {v: k for k, v in VOICED_PAIRS.items()}
# kana after which a following ウ is read long: written ー in a careless transcription (ユウタ → ユータ)
LONG_VOWEL_BEFORE_U = set("オコソトノホモヨロゴゾドボポョュウクスツヌフムユルグズブプ")
HOLDER_NAME_STYLES = 4  # see holder_names()


@dataclass(frozen=True)
class NameVocabulary:
    """Surnames (with frequency) and given names (male first, then female), in four spellings."""

    surname_katakana: pl.Series
    surname_probability: np.ndarray
    given_katakana: pl.Series
    male_given_count: int
    # spellings stacked style by style: index = style * len(vocabulary) + name
    surname_spellings: pl.Series
    given_spellings: pl.Series
    # given names, then a near-identical spelling of each (long vowel, enlarged small kana or
    # voicing): index g + given_count is the near spelling of name g
    given_with_near_katakana: pl.Series
    # for each entry of given_with_near_katakana, the first entry with the same reading (アイ is
    # both a male and a female name; a near spelling may be another name)
    given_reading: np.ndarray

    @property
    def surname_count(self) -> int:
        return self.surname_katakana.len()

    @property
    def given_count(self) -> int:
        return self.given_katakana.len()


def _dataset_rows(file_name: str) -> list[list[str]]:
    path = resources.files("japanese_personal_name_dataset") / "dataset" / file_name
    with path.open(encoding="utf-8", newline="") as f:
        return [row for row in csv.reader(f) if row]


def near_spelling(katakana: str) -> str:
    """A near-identical spelling: first ウ after o/u → ー, else first small kana enlarged, else
    the first kana with a voicing partner toggled; the name itself if none applies."""
    for i in range(1, len(katakana)):
        if katakana[i] == "ウ" and katakana[i - 1] in LONG_VOWEL_BEFORE_U:
            return katakana[:i] + "ー" + katakana[i + 1 :]
    for i, ch in enumerate(katakana):
        if ch in SMALL_KANA:
            return katakana[:i] + jaconv.enlarge_smallkana(ch) + katakana[i + 1 :]
    for i, ch in enumerate(katakana):
        if ch in VOICED_PAIRS:
            return katakana[:i] + VOICED_PAIRS[ch] + katakana[i + 1 :]
    return katakana


def _spellings(katakana: list[str]) -> list[str]:
    """Style 0 and 1 full-width katakana, 2 half-width katakana, 3 hiragana (see holder_names)."""
    half = [jaconv.z2h(k, kana=True, ascii=False, digit=False) for k in katakana]
    hiragana = [jaconv.kata2hira(k) for k in katakana]
    return katakana + katakana + half + hiragana


@functools.cache
def names() -> NameVocabulary:
    # last_name_org.csv: kanji, estimated population, hiragana, romaji (research §7.5). Several
    # kanji share a reading (斎藤/斉藤 サイトウ): counts are summed per reading, since only the
    # reading reaches the register extract.
    surnames = (
        pl.DataFrame(
            [(jaconv.hira2kata(r[2]), int(r[1])) for r in _dataset_rows("last_name_org.csv")],
            schema={"katakana": pl.String, "count": pl.Int64},
            orient="row",
        )
        .group_by("katakana")
        .agg(pl.col("count").sum())
        .sort("count", "katakana", descending=[True, False])
    )
    # first_name_*_org.csv: hiragana reading, romaji, kanji variants; no frequencies (§7.6)
    male = sorted({jaconv.hira2kata(r[0]) for r in _dataset_rows("first_name_man_org.csv")})
    female = sorted({jaconv.hira2kata(r[0]) for r in _dataset_rows("first_name_woman_org.csv")})
    given = male + female
    with_near = given + [near_spelling(g) for g in given]
    first_index: dict[str, int] = {}
    for index, reading in enumerate(with_near):
        first_index.setdefault(reading, index)
    counts = surnames["count"].to_numpy().astype(np.float64)
    surname_list = surnames["katakana"].to_list()
    return NameVocabulary(
        surname_katakana=pl.Series(surname_list, dtype=pl.String),
        surname_probability=counts / counts.sum(),
        given_katakana=pl.Series(given, dtype=pl.String),
        male_given_count=len(male),
        surname_spellings=pl.Series(_spellings(surname_list), dtype=pl.String),
        given_spellings=pl.Series(_spellings(given), dtype=pl.String),
        given_with_near_katakana=pl.Series(with_near, dtype=pl.String),
        given_reading=np.array([first_index[g] for g in with_near], dtype=np.int64),
    )


@dataclass(frozen=True)
class MunicipalityVocabulary:
    code: pl.Series
    probability: np.ndarray


def municipality_weight(codes: list[str]) -> np.ndarray:
    """Relative population weight of each municipality within its prefecture (a model, see tables)."""
    prefecture = np.array([int(c[:2]) for c in codes])
    number = np.array([int(c[2:5]) for c in codes])
    return np.select(
        [(prefecture == 13) & (number < 200), number < 200, number < 300],
        [tables.SPECIAL_WARD_WEIGHT, tables.DESIGNATED_CITY_WEIGHT, tables.CITY_WEIGHT],
        tables.TOWN_WEIGHT,
    )


@functools.cache
def municipalities() -> MunicipalityVocabulary:
    """Every municipality (no prefecture rows), with P(municipality) = P(prefecture) · weight share."""
    rows = reference.municipalities().filter(~pl.col("is_prefecture")).sort("municipality_code")
    codes = rows["municipality_code"].to_list()
    prefectures = rows["prefecture_code"].to_list()
    weight = municipality_weight(codes)
    population = tables.PREFECTURE_POPULATION_2020
    prefecture_weight = {p: weight[[q == p for q in prefectures]].sum() for p in population}
    probability = np.array(
        [population[p] * w / prefecture_weight[p] for p, w in zip(prefectures, weight)]
    )
    return MunicipalityVocabulary(
        code=pl.Series(codes, dtype=pl.String), probability=probability / probability.sum()
    )


@dataclass(frozen=True)
class BranchVocabulary:
    """All branches of the bank master; the last row is the planted unknown bank."""

    bank_code: pl.Series
    branch_code: pl.Series
    probability: np.ndarray  # over the real branches (the unknown bank is never drawn)

    @property
    def unknown_bank_index(self) -> int:
        return self.bank_code.len() - 1


@functools.cache
def branches() -> BranchVocabulary:
    rows = reference.branches().sort("bank_code", "branch_code")
    per_bank = rows.group_by("bank_code").agg(pl.len().alias("branches"))
    named_share = sum(tables.BANK_SHARES.values())
    other = per_bank.filter(~pl.col("bank_code").is_in(list(tables.BANK_SHARES)))
    other_total = other["branches"].sum()
    bank_share = {b: s for b, s in tables.BANK_SHARES.items()} | {
        b: (1 - named_share) * n / other_total for b, n in other.iter_rows()
    }
    branch_count = dict(per_bank.iter_rows())
    probability = np.array([bank_share[b] / branch_count[b] for b in rows["bank_code"]])
    return BranchVocabulary(
        bank_code=pl.concat([rows["bank_code"], pl.Series([tables.UNKNOWN_BANK_CODE])]),
        branch_code=pl.concat([rows["branch_code"], pl.Series([tables.UNKNOWN_BRANCH_CODE])]),
        probability=probability / probability.sum(),
    )
