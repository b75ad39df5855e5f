"""Detect garbled text extraction (broken font maps, mojibake) so a reader can retry or warn."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Scripts that legitimately alternate letter by letter inside one word (Japanese mixes kanji and kana).
_SCRIPT_FAMILIES = {
    "HIRAGANA": "CJK",
    "KATAKANA": "CJK",
    "HANGUL": "CJK",
    "BOPOMOFO": "CJK",
    "IDEOGRAPHIC": "CJK",
    "FULLWIDTH": "LATIN",
}
_TOKEN = re.compile(r"\S+")
# Chinese and Japanese run Latin words into their text without spaces: that switch is normal.
_NORMAL_SWITCHES = {frozenset(("CJK", "LATIN"))}
GARBLED_SCORE = 0.15
_MIN_LATIN_FOR_VOWELS = 16


@lru_cache(maxsize=4096)
def _script(ch: str) -> str:
    try:
        first = unicodedata.name(ch).split(" ", 1)[0]
    except ValueError:
        return "UNKNOWN"
    return _SCRIPT_FAMILIES.get(first, first)


def _is_rare(ch: str) -> bool:
    code = ord(ch)
    category = unicodedata.category(ch)
    return (
        ch == "\ufffd"
        or category in ("Co", "Cn", "Cs")
        or (category == "Cc" and ch not in "\n\t")
        or 0x3400 <= code <= 0x4DBF  # CJK Extension A: almost never in real text, common in broken CMaps
        or 0x02B0 <= code <= 0x02FF  # spacing modifier letters stand in for punctuation in broken maps
    )


def garble_score(text: str) -> float:
    """0 for clean text, rising toward 1 as characters look like a broken font map's output."""
    letters = rare = switches = 0
    for token in _TOKEN.findall(text):
        previous = None
        for ch in token:
            if _is_rare(ch):
                rare += 1
            if not ch.isalpha():
                continue
            letters += 1
            script = _script(ch)
            if previous is not None and script != previous and frozenset((script, previous)) not in _NORMAL_SWITCHES:
                switches += 1
            previous = script
    total = max(letters, 1)
    return min(1.0, rare / total + switches / total + _vowel_penalty(text, letters))


def _vowel_penalty(text: str, letters: int) -> float:
    """Latin-script writing is roughly 30-45% vowels; a shifted or substituted font map is not."""
    latin = [ch for ch in unicodedata.normalize("NFD", text).lower() if "a" <= ch <= "z"]
    if len(latin) < _MIN_LATIN_FOR_VOWELS or len(latin) < 0.5 * letters:
        return 0.0
    ratio = sum(ch in "aeiouy" for ch in latin) / len(latin)
    return 1.0 if ratio < 0.15 or ratio > 0.7 else 0.0


def looks_garbled(text: str) -> bool:
    """True when `text` is more likely a broken extraction than real writing."""
    return bool(text.strip()) and garble_score(text) >= GARBLED_SCORE
