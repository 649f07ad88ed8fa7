"""engine.kana: the §5.3/§5.4 examples, and the vectorised expression against the scalar reference."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_series_equal

from engine import kana

# research §5.4 example pipeline table and §5.3 rule examples.
EXAMPLES = {
    "やまだ　たろう": "ﾔﾏﾀﾞ ﾀﾛｳ",
    "キョウコ・ヴァレンタイン": "ｷﾖｳｺ.ｳﾞｱﾚﾝﾀｲﾝ",
    "ｼｮｳｺﾞ": "ｼﾖｳｺﾞ",
    "オオノ　ヲサム": "ｵｵﾉ ｵｻﾑ",
    "ジョージ　スミス": "ｼﾞﾖ-ｼﾞ ｽﾐｽ",
    "Ｊｏｈｎ　Ｓｍｉｔｈ": "JOHN SMITH",
    "ウェーバー": "ｳｴ-ﾊﾞ-",
    "ガッコウ": "ｶﾞﾂｺｳ",
    "カブシキガイシャ": "ｶﾌﾞｼｷｶﾞｲｼﾔ",
    "キョウコ": "ｷﾖｳｺ",
    "ガ": "ｶﾞ",
    "ヤマダ・エージェンシー": "ﾔﾏﾀﾞ.ｴ-ｼﾞｴﾝｼ-",
    "ヤマダ　タロウ": "ﾔﾏﾀﾞ ﾀﾛｳ",
    "Seed": "SEED",
    "ヰ ヱ ヮ ゐ ゑ ゎ ヵ ヶ": "ｲ ｴ ﾜ ｲ ｴ ﾜ ｶ ｹ",
    "ヴァイオリン": "ｳﾞｱｲｵﾘﾝ",
    "ヂ ヅ": "ﾁﾞ ﾂﾞ",
    "ー ｰ － ‐ — ― 〜 ～ −": "- - - - - - - - -",
    "・ ･": ". .",
    "（カ）／．": "(ｶ)/.",
    "ａｂｃ１２３": "ABC123",
    # spaces: full-width → half-width, runs collapsed, ends stripped
    "　ヤマダ　　　タロウ　": "ﾔﾏﾀﾞ ﾀﾛｳ",
    "ヤマダ\tタロウ": "ﾔﾏﾀﾞ ﾀﾛｳ",
    # voiced marks in every spelling compose, stray ones stay half-width
    "か゛ ﾊ゜ ｶ\u3099": "ｶﾞ ﾊﾟ ｶﾞ",
    "ﾜﾞ ヷ ヺ": "ﾜﾞ ﾜﾞ ｵﾞ",
    "": "",
    "   ": "",
}


@pytest.mark.parametrize(("text", "expected"), EXAMPLES.items())
def test_normalize_kana_research_examples(text: str, expected: str) -> None:
    assert kana.normalize_kana(text) == expected
    assert kana.is_zengin_safe(expected) or "/" in expected


@pytest.mark.parametrize(("text", "expected"), EXAMPLES.items())
def test_normalize_kana_expr_research_examples(text: str, expected: str) -> None:
    got = pl.select(kana.normalize_kana_expr(pl.lit(text, dtype=pl.String))).item()
    assert got == expected


def test_kanji_is_kept_and_reported_unsafe() -> None:
    # §5.4: 株式会社ヤマダ is rejected (kanji); the corporate abbreviation step is not ours.
    out = kana.normalize_kana("株式会社ヤマダ")
    assert out == "株式会社ﾔﾏﾀﾞ"
    assert not kana.is_zengin_safe(out)


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("ﾔﾏﾀﾞ ﾀﾛｳ", True),
        ("JOHN SMITH (ｶ)-.0123", True),
        ("", True),
        ("ｦ", False),  # ヲ is written ｵ
        ("ｷｮｳｺ", False),  # small kana
        ("ﾃｽﾄｰ", False),  # long mark: the devture fixture's ｰ
        ("ﾔﾏﾀﾞ/ﾀﾛｳ", False),  # `/` left out of the safe set
        ("ﾔﾏﾀﾞ･ﾀﾛｳ", False),
        ("john", False),
        ("ヤマダ", False),  # full-width
        ("山田", False),
        ("｢ｶ｣", False),
    ],
)
def test_is_zengin_safe(text: str, safe: bool) -> None:
    assert kana.is_zengin_safe(text) is safe
    assert pl.select(kana.is_zengin_safe_expr(pl.lit(text, dtype=pl.String))).item() is safe


def test_zengin_name_cuts_to_30_characters() -> None:
    long_name = "ジョウジ　" * 8  # ｼﾞﾖｳｼﾞ = 6 characters
    expected = ("ｼﾞﾖｳｼﾞ " * 8)[:30]
    assert kana.zengin_name(long_name) == expected
    got = pl.select(kana.zengin_name_expr(pl.lit(long_name))).item()
    assert got == expected
    assert len(got) == 30
    assert len(got.encode("cp932")) == 30


def test_normalize_kana_expr_keeps_nulls_and_order() -> None:
    s = pl.Series("name", ["やまだ", None, "ｶﾞｯｺｳ"])
    got = s.to_frame().select(kana.normalize_kana_expr(pl.col("name"))).to_series()
    assert_series_equal(got, pl.Series("name", ["ﾔﾏﾀﾞ", None, "ｶﾞﾂｺｳ"]))


def test_normalize_kana_expr_on_a_slice_with_nulls() -> None:
    s = pl.Series("name", [None, "ア", "  ｶﾞ  ｷﾞ ", None, "𠮷ｳﾞ", "ﾞｱ", "  ", "㍿" * 100] * 3).slice(2, 18)
    got = s.to_frame().select(kana.normalize_kana_expr(pl.col("name"))).to_series()
    assert got.to_list() == [None if x is None else kana.normalize_kana(x) for x in s.to_list()]


@pytest.mark.parametrize("values", [[], [None, None], ["", ""], ["", None], ["  ", " "]])
def test_normalize_kana_expr_on_empty_and_null_columns(values: list) -> None:
    s = pl.Series("name", values, dtype=pl.String)
    got = s.to_frame().select(kana.normalize_kana_expr(pl.col("name"))).to_series()
    assert got.to_list() == [None if x is None else kana.normalize_kana(x) for x in values]


def test_normalize_kana_expr_in_a_streaming_query() -> None:
    names = random_names(77, 2_000) * 40  # 80,000 rows: many batches
    got = pl.LazyFrame({"name": names}).select(kana.normalize_kana_expr(pl.col("name"))).collect(engine="streaming")
    expected = {name: kana.normalize_kana(name) for name in set(names)}
    assert got["name"].to_list() == [expected[name] for name in names]


# --- property test: vectorised == scalar on seeded random strings ----------------------------

_ALPHABETS = [
    "".join(chr(c) for c in range(0x3041, 0x3097)),  # hiragana incl. small and ゔゕゖ
    "".join(chr(c) for c in range(0x309B, 0x30FF)),  # ゛゜ゝゞゟ katakana incl. ヷ-ヺ ・ー ヽヾヿ
    "".join(chr(c) for c in range(0xFF61, 0xFFA0)),  # half-width katakana and punctuation
    "".join(chr(c) for c in range(0xFF01, 0xFF5F)),  # full-width ASCII
    "".join(chr(c) for c in range(0x20, 0x7F)),  # ASCII
    "  　　\t\u3099\u309a\u309b\u309c\uff9e\uff9f",  # spaces and every voiced mark
    "‐‑‒–—―−〜～ｰー・･",  # dashes and dots
    "山田太郎株式会社齋藤髙橋々〆ヶ𠮷𩸽",  # kanji (unsafe, kept), two beyond the BMP
    "éßüÀµ²½ﬁ",  # Latin-1 and compatibility characters
    "㋐㋑㋕㋜㌀㌔㍿ㇰㇱ",  # circled / squared katakana, Ainu small katakana
]


def random_names(seed: int, n: int) -> list[str]:
    rng = np.random.default_rng(seed)
    names = []
    for _ in range(n):
        length = int(rng.integers(0, 25))
        alphabets = rng.choice(len(_ALPHABETS), size=int(rng.integers(1, 4)), replace=False)
        pool = "".join(_ALPHABETS[i] for i in alphabets)
        names.append("".join(pool[i] for i in rng.integers(0, len(pool), size=length)))
    return names


@pytest.mark.parametrize("seed", range(20))
def test_normalize_kana_expr_matches_scalar(seed: int) -> None:
    names = random_names(seed, 500)
    got = pl.DataFrame({"name": names}).select(kana.normalize_kana_expr(pl.col("name")))
    expected = [kana.normalize_kana(name) for name in names]
    mismatches = [(n, g, e) for n, g, e in zip(names, got["name"], expected) if g != e]
    assert mismatches == []


@pytest.mark.parametrize("seed", range(5))
def test_zengin_name_and_safety_exprs_match_scalar(seed: int) -> None:
    names = random_names(1000 + seed, 500)
    got = pl.DataFrame({"name": names}).select(
        name=kana.zengin_name_expr(pl.col("name")),
        is_safe=kana.is_zengin_safe_expr(kana.normalize_kana_expr(pl.col("name"))),
    )
    assert got["name"].to_list() == [kana.zengin_name(n) for n in names]
    assert got["is_safe"].to_list() == [kana.is_zengin_safe(kana.normalize_kana(n)) for n in names]


@pytest.mark.parametrize("seed", range(5))
def test_safe_output_is_a_fixed_point(seed: int) -> None:
    for name in random_names(2000 + seed, 500):
        out = kana.normalize_kana(name)
        if kana.is_zengin_safe(out):
            assert kana.normalize_kana(out) == out


def test_safe_output_is_one_cp932_byte_per_character() -> None:
    assert len(kana.SAFE_CHARACTERS.encode("cp932")) == len(kana.SAFE_CHARACTERS)
    assert kana.is_zengin_safe(kana.SAFE_CHARACTERS)


def test_bank_master_names_are_safe() -> None:
    from engine import reference

    names = pl.concat([
        reference.banks().select(name="bank_name_kana"),
        reference.branches().select(name="branch_name_kana"),
    ])
    unsafe = names.filter(~kana.is_zengin_safe_expr(pl.col("name")))
    assert unsafe["name"].head(5).to_list() == []


# --- the matching key (identity matching reads names through it) ------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("ゴトウ", "ｺﾄｳ"), ("コトウ", "ｺﾄｳ"), ("ユーコ", "ﾕｳｺ"), ("ユウコ", "ﾕｳｺ"), ("サトー　タロウ", "ｻﾄｳﾀﾛｳ"),
    ("ﾊﾟﾝ ﾀﾞ-", "ﾊﾝﾀｳ"), ("", ""), ("  ", ""), ("山田 ﾀﾞ", "山田ﾀ"),
])
def test_matching_key_examples(text: str, expected: str) -> None:
    assert kana.matching_key(text) == expected
    assert pl.select(kana.matching_key_expr(pl.lit(text, dtype=pl.String))).item() == expected


@pytest.mark.parametrize("seed", range(10))
def test_matching_key_expr_matches_scalar_and_the_string_replacements(seed: int) -> None:
    """The kernel against the scalar reference, and against the three Polars replacements it
    took the place of."""
    names = random_names(100 + seed, 500)
    frame = pl.DataFrame({"name": names})
    got = frame.select(kana.matching_key_expr(pl.col("name")))["name"].to_list()
    assert got == [kana.matching_key(name) for name in names]
    replaced = frame.select(
        kana.normalize_kana_expr(pl.col("name")).str.replace_all(" ", "", literal=True)
        .str.replace_all("-", "ｳ", literal=True).str.replace_all("[ﾞﾟ]", "")
    )["name"].to_list()
    assert got == replaced


def test_matching_key_expr_on_a_slice_with_nulls_and_in_a_streaming_query() -> None:
    s = pl.Series("name", [None, "ア", "  ｶﾞ  ｷﾞ ", None, "𠮷ｳﾞ", "ﾞｱ", "--", "㍿" * 100] * 3).slice(2, 18)
    got = s.to_frame().select(kana.matching_key_expr(pl.col("name"))).to_series()
    assert got.to_list() == [None if x is None else kana.matching_key(x) for x in s.to_list()]
    names = random_names(78, 2_000) * 40
    streamed = pl.LazyFrame({"name": names}).select(kana.matching_key_expr(pl.col("name"))).collect(engine="streaming")
    expected = {name: kana.matching_key(name) for name in set(names)}
    assert streamed["name"].to_list() == [expected[name] for name in names]
