"""Kana: normalise account-holder names to the Zengin half-width safe set (research §5.2–5.4).

`normalize_kana` is the scalar reference (jaconv, one string at a time); `normalize_kana_expr`
is the same function as a Polars expression, built from character tables that the scalar
function itself produces, so the two cannot drift apart.
"""

from __future__ import annotations

import functools
import re
import unicodedata

import jaconv
import polars as pl

# §5.2 conservative safe set: 0-9 A-Z space ( ) - . + half-width ｱ-ﾝ (U+FF71–U+FF9D, which
# leaves out ｦ U+FF66, the small kana U+FF67–FF6F and ｰ U+FF70) + ﾞ ﾟ. `/` is left out: PCA's
# 全銀協使用可能文字 forbids it in name fields while other sources allow it, and a name never
# needs it. A name with `/` is therefore reported unsafe rather than sent.
SAFE_CHARACTERS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ ()-." + "".join(
    chr(c) for c in range(0xFF71, 0xFF9E)
) + "\uff9e\uff9f"
SAFE_PATTERN = r"^[0-9A-Z ()\-.\x{FF71}-\x{FF9F}]*$"
_SAFE_RE = re.compile(r"^[0-9A-Z ()\-.\uff71-\uff9f]*$")

PAYEE_NAME_LENGTH = 30  # 受取人名, §4.3: 30 bytes, one byte per allowed character

# Before NFKC: spacing voiced marks become combining ones, so that か゛ composes to が like かﾞ
# does (NFKC alone turns ゛ into "space + U+3099").
_BEFORE_NFKC = str.maketrans({"\u309b": "\u3099", "\u309c": "\u309a"})

# After hira2kata and enlarge_smallkana, before z2h: the §5.4 extra map, plus the variants a
# real registry contains (Windows ～ for 〜, U+2212 minus, en dash, tabs, stray combining marks).
_DASH = "-"
_EXTRA_MAP = str.maketrans(
    {
        "ヲ": "オ",
        "ヰ": "イ",
        "ヱ": "エ",
        "ヮ": "ワ",
        "ヵ": "カ",
        "ヶ": "ケ",
        "ヷ": "ﾜﾞ",
        "ヸ": "ｲﾞ",
        "ヹ": "ｴﾞ",
        "ヺ": "ｵﾞ",
        "ー": _DASH,
        "－": _DASH,
        "‐": _DASH,
        "‒": _DASH,
        "–": _DASH,
        "—": _DASH,
        "―": _DASH,
        "−": _DASH,
        "〜": _DASH,
        "～": _DASH,
        "~": _DASH,  # NFKC has already turned ～ (cp932's 〜) into ASCII ~
        "・": ".",
        "\u3000": " ",
        "\t": " ",
        "\n": " ",
        "\r": " ",
        "\x0b": " ",
        "\x0c": " ",
        "（": "(",
        "）": ")",
        "／": "/",
        "．": ".",
        "\u3099": "\uff9e",  # a voiced mark NFKC could not compose (ｱﾞ) stays a half-width ﾞ
        "\u309a": "\uff9f",
    }
)

_SPACE_RUNS = re.compile(" {2,}")


def _normalize_characters(text: str) -> str:
    """The character-by-character part of the pipeline: everything except space collapsing."""
    text = unicodedata.normalize("NFKC", text.translate(_BEFORE_NFKC))
    text = jaconv.enlarge_smallkana(jaconv.hira2kata(text))
    text = text.translate(_EXTRA_MAP)
    return jaconv.z2h(text, kana=True, ascii=True, digit=True).upper()


def normalize_kana(text: str) -> str:
    """Return `text` as half-width Zengin kana: the research §5.4 pipeline.

    NFKC → hira2kata → enlarge_smallkana → extra map (ヲ→ｵ, ー→-, ・→., …) → z2h → upper →
    one space between words, none at the ends. Characters it cannot represent (kanji) are kept,
    so `is_zengin_safe` reports them.

    >>> normalize_kana("キョウコ・ヴァレンタイン")
    'ｷﾖｳｺ.ｳﾞｱﾚﾝﾀｲﾝ'
    >>> normalize_kana("Ｊｏｈｎ　　Ｓｍｉｔｈ ")
    'JOHN SMITH'
    """
    return _SPACE_RUNS.sub(" ", _normalize_characters(text)).strip(" ")


def is_zengin_safe(text: str) -> bool:
    """True when every character of `text` is in the §5.2 safe set (`SAFE_CHARACTERS`)."""
    return _SAFE_RE.match(text) is not None


def zengin_name(text: str) -> str:
    """Return the normalised name cut to the 30 characters of 受取人名 (scalar reference)."""
    return normalize_kana(text)[:PAYEE_NAME_LENGTH]


# --- vectorised twin ---------------------------------------------------------------------------

# Voiced marks in every spelling an input may use; each can compose with the kana before it.
_VOICED_MARKS = ("\uff9e", "\uff9f", "\u309b", "\u309c", "\u3099", "\u309a")


@functools.cache
def character_table() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return (patterns, replacements): the scalar pipeline applied to single characters.

    Built once from `_normalize_characters` itself:
    - every BMP character whose normalisation differs from itself (~6,000, mostly NFKC
      compatibility forms and lower-case letters);
    - every (character, voiced mark) pair that NFKC composes into something other than the two
      halves normalised apart (ｶﾞ, か゛, ㋕゙ …); pairs come first so that, matched leftmost-first,
      they win over their first character.

    The pipeline is otherwise character-wise (jaconv and the extra map are `str.translate`), so
    applying this table and then collapsing spaces equals `normalize_kana` for any BMP string
    whose combining marks are kana voiced marks.
    """
    singles: dict[str, str] = {}
    composable: list[str] = []
    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        normalized = _normalize_characters(char)
        if normalized != char:
            singles[char] = normalized
        decomposed = unicodedata.normalize("NFKD", char.translate(_BEFORE_NFKC))
        if decomposed and unicodedata.combining(decomposed[-1]) == 0 and any(
            unicodedata.normalize("NFC", decomposed[-1] + mark) != decomposed[-1] + mark
            for mark in ("\u3099", "\u309a")
        ):
            composable.append(char)
    pairs: dict[str, str] = {}
    for char in composable:
        for mark in _VOICED_MARKS:
            whole = _normalize_characters(char + mark)
            if whole != _normalize_characters(char) + _normalize_characters(mark):
                pairs[char + mark] = whole
    table = {**pairs, **singles}
    return tuple(table), tuple(table.values())


def normalize_kana_expr(expr: pl.Expr) -> pl.Expr:
    """Return `normalize_kana` as a vectorised expression (no Python per row)."""
    patterns, replacements = character_table()
    return (
        expr.str.replace_many(list(patterns), list(replacements), leftmost=True)
        .str.replace_all(" {2,}", " ")
        .str.strip_chars(" ")
    )


def zengin_name_expr(expr: pl.Expr) -> pl.Expr:
    """Return the normalised name cut to the 30 characters of 受取人名."""
    return normalize_kana_expr(expr).str.slice(0, PAYEE_NAME_LENGTH)


def is_zengin_safe_expr(expr: pl.Expr) -> pl.Expr:
    """True where every character is in the §5.2 safe set (null stays null)."""
    return expr.str.contains(SAFE_PATTERN)
