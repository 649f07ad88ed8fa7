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
import numpy as np
import polars as pl
import pyarrow as pa
from numba import njit

from engine.similarity import string_buffers

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


@functools.cache
def _tables() -> tuple[np.ndarray, ...]:
    """character_table() as lookup arrays for the kernel: each BMP character's single
    replacement, each composable character's row of (voiced mark → pair replacement), and the
    replacements' UTF-8 bytes (offsets, data). -1: no replacement."""
    patterns, replacements = character_table()
    single = np.full(0x10000, -1, dtype=np.int64)
    pair_row = np.full(0x10000, -1, dtype=np.int64)
    pairs = [(p, i) for i, p in enumerate(patterns) if len(p) == 2]
    firsts = sorted({p[0] for p, _ in pairs})
    pair_table = np.full((max(len(firsts), 1), len(_VOICED_MARKS)), -1, dtype=np.int64)
    for row, char in enumerate(firsts):
        pair_row[ord(char)] = row
    for pattern, i in pairs:
        pair_table[pair_row[ord(pattern[0])], _VOICED_MARKS.index(pattern[1])] = i
    for i, pattern in enumerate(patterns):
        if len(pattern) == 1:
            single[ord(pattern)] = i
    encoded = [r.encode() for r in replacements]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in encoded])
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    mark = np.full(0x10000, -1, dtype=np.int64)
    for k, char in enumerate(_VOICED_MARKS):
        mark[ord(char)] = k
    return single, pair_row, pair_table, mark, offsets, data


@njit(cache=True, nogil=True, inline="always")
def _code_point(data, i, stop):
    """(code point, byte length) of the UTF-8 sequence at data[i] (Arrow strings are valid UTF-8)."""
    b = np.int64(data[i])
    if b < 0x80:
        return b, 1
    if b < 0xE0 and i + 2 <= stop:
        return ((b & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F), 2
    if b < 0xF0 and i + 3 <= stop:
        return ((b & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F), 3
    if i + 4 <= stop:
        return 0x10000, 4  # beyond the BMP: no pattern has it, kept as it is
    return 0x10000, stop - i


@njit(cache=True, nogil=True)
def _normalized_utf8(offsets, data, single, pair_row, pair_table, mark, rep_offsets, rep_data, out_offsets, out):
    """The table-driven normalisation of every row (leftmost pair first, else the single
    replacement, else the character as it is), spaces collapsed and stripped as they are written.
    Returns the bytes written, or -1 as soon as `out` is too small (nothing else is promised)."""
    capacity = out.shape[0]
    n = offsets.shape[0] - 1
    pos = 0
    for row in range(n):
        out_offsets[row] = pos
        i, stop = offsets[row], offsets[row + 1]
        started, space = False, False
        while i < stop:
            cp, width = _code_point(data, i, stop)
            rep = -1
            used = width
            if cp < 0x10000 and pair_row[cp] >= 0 and i + width < stop:
                nxt, nxt_width = _code_point(data, i + width, stop)
                if nxt < 0x10000 and mark[nxt] >= 0:
                    rep = pair_table[pair_row[cp], mark[nxt]]
                    if rep >= 0:
                        used = width + nxt_width
            if rep < 0 and cp < 0x10000:
                rep = single[cp]
            if rep >= 0:
                source, start, end = rep_data, rep_offsets[rep], rep_offsets[rep + 1]
            else:
                source, start, end = data, i, i + width
            if pos + (end - start) + 1 > capacity:
                return -1
            for k in range(start, end):
                b = source[k]
                if b == 0x20:
                    space = started
                    continue
                if space:
                    out[pos] = 0x20
                    pos += 1
                    space = False
                out[pos] = b
                pos += 1
                started = True
            i += used
    out_offsets[n] = pos
    return pos


@njit(cache=True, nogil=True)
def _matching_utf8(offsets, data, out_offsets, out):
    """The matching key of normalised names (`matching_key`): spaces dropped, the long vowel
    mark `-` read as ｳ (EF BD B3), the voiced marks ﾞ ﾟ (EF BE 9E/9F) dropped. `out` holds 3
    bytes per input byte (`-` is the only character that grows). Returns the bytes written."""
    pos = 0
    n = offsets.shape[0] - 1
    for row in range(n):
        out_offsets[row] = pos
        i, stop = offsets[row], offsets[row + 1]
        while i < stop:
            b = data[i]
            if b == 0x20:
                i += 1
            elif b == 0x2D:
                out[pos], out[pos + 1], out[pos + 2] = 0xEF, 0xBD, 0xB3
                pos += 3
                i += 1
            elif b == 0xEF and i + 2 < stop and data[i + 1] == 0xBE and (data[i + 2] == 0x9E or data[i + 2] == 0x9F):
                i += 3
            else:
                out[pos] = b
                pos += 1
                i += 1
    out_offsets[n] = pos
    return pos


def _validity(array: pa.Array):
    validity = array.buffers()[0] if array.null_count else None
    if validity is not None and array.offset:
        validity = pa.array(array.is_valid()).buffers()[1]
    return validity


def _normalized(series: pl.Series, matching: bool = False) -> pl.Series:
    """normalize_kana of every value, through the kernel over the Arrow buffers (nulls kept);
    with `matching`, then the matching key of each (`matching_key`)."""
    offsets, data, array = string_buffers(series.to_arrow())
    tables = _tables()
    out_offsets = np.empty(len(offsets), dtype=np.int64)
    # kana at most double (ガ → ｶﾞ); a rare longer expansion (㍿ → 株式会社) asks for more room
    room = 2 * int(offsets[-1] - offsets[0]) + 64
    while (size := _normalized_utf8(offsets, data, *tables, out_offsets, out := np.empty(room, np.uint8))) < 0:
        room *= 4
    if matching:
        keyed_offsets = np.empty(len(offsets), dtype=np.int64)
        keyed = np.empty(3 * size + 3, np.uint8)
        size = _matching_utf8(out_offsets, out, keyed_offsets, keyed)
        out_offsets, out = keyed_offsets, keyed
    result = pa.LargeStringArray.from_buffers(len(array), pa.py_buffer(out_offsets), pa.py_buffer(out[:size]),
                                              _validity(array), array.null_count)
    return pl.Series(series.name, result, dtype=pl.String)


def normalize_kana_expr(expr: pl.Expr) -> pl.Expr:
    """Return `normalize_kana` as a vectorised expression: the character table applied by a
    numba kernel over the Arrow buffers, no Python per row (2.6x Polars' replace_many with the
    table's ~6,000 patterns on 1M full names, side by side: benchmarks/RESULTS.md)."""
    return expr.map_batches(_normalized, return_dtype=pl.String, is_elementwise=True)


def matching_key(text: str) -> str:
    """The name as identity matching reads it (scalar reference): normalised, no spaces, the long
    vowel mark read as ｳ (ユー and ユウ are one name written two ways), no voiced marks (クキ and
    グキ: a keying or OCR slip, research §1.4 F6)."""
    return normalize_kana(text).replace(" ", "").replace("-", "ｳ").replace("ﾞ", "").replace("ﾟ", "")


def matching_key_expr(expr: pl.Expr) -> pl.Expr:
    """Return `matching_key` as a vectorised expression: one more kernel pass over the normalised
    bytes (the three Polars string replacements it replaces took 1.8x as long on 3.3M names)."""
    return expr.map_batches(functools.partial(_normalized, matching=True), return_dtype=pl.String,
                            is_elementwise=True)


def zengin_name_expr(expr: pl.Expr) -> pl.Expr:
    """Return the normalised name cut to the 30 characters of 受取人名."""
    return normalize_kana_expr(expr).str.slice(0, PAYEE_NAME_LENGTH)


def is_zengin_safe_expr(expr: pl.Expr) -> pl.Expr:
    """True where every character is in the §5.2 safe set (null stays null)."""
    return expr.str.contains(SAFE_PATTERN)
