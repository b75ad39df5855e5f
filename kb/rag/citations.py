"""Citations in an answer: the `[n]` the model wrote, and the quote an uncited answer was copied from.

Small models (SmolLM2-135M) answer simple questions by copying a quote's sentence but almost never
write `[1]` themselves, whatever the prompt says. When an answer cites nothing, kb checks how much of
it is word-for-word in each quote and, when one quote clearly holds it, cites that one: the answer then
ends with ` [n]` and the response says the citation was added by kb, not written by the model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

CITATION = re.compile(r"[\[【]\s*(\d{1,3}(?:\s*[,，、;；]\s*\d{1,3})*)\s*[\]】]")
CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# One token per Chinese character; other words are runs of letters and digits that stop at a Chinese character
# (else "1975年由泰国…" would be one token and never match a copy of it).
TOKEN = re.compile(rf"[{CJK}]|[^\W_{CJK}]+", re.UNICODE)
NGRAM = 3
MIN_NGRAMS = 3  # an answer of fewer than 5 tokens is too short to tell where it came from
MIN_COPIED_SHARE = 0.5


def extract_citations(text: str, count: int) -> list[int]:
    """Quote numbers cited as [1], [1, 2], [1][2] or 【1】, in order of first mention, within 1..count."""
    seen: dict[int, None] = {}
    for match in CITATION.finditer(text):
        for part in re.split(r"[,，、;；]", match.group(1)):
            number = int(part)
            if 1 <= number <= count:
                seen.setdefault(number, None)
    return list(seen)


def _ngrams(text: str) -> set[tuple[str, ...]]:
    tokens = [t.lower() for t in TOKEN.findall(CITATION.sub(" ", text))]
    return {tuple(tokens[i : i + NGRAM]) for i in range(len(tokens) - NGRAM + 1)}


def copied_share(answer: str, quote: str) -> float:
    """Share of the answer's word (or Chinese character) trigrams found in the quote."""
    wanted = _ngrams(answer)
    return len(wanted & _ngrams(quote)) / len(wanted) if len(wanted) >= MIN_NGRAMS else 0.0


def source_of_copy(answer: str, quotes: Sequence[str]) -> int | None:
    """The number of the quote most of the answer was copied from (at least half its trigrams), if any."""
    shares = [copied_share(answer, quote) for quote in quotes]
    best = max(range(len(shares)), key=lambda i: (shares[i], -i), default=None)
    return best + 1 if best is not None and shares[best] >= MIN_COPIED_SHARE else None
