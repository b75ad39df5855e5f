"""Citations in an answer: the `[n]` the model wrote, and the quote an uncited answer was copied from.

Small models (SmolLM2-135M) answer simple questions by copying a quote's sentence but almost never
write `[1]` themselves, whatever the prompt says. When an answer cites nothing, kb checks how much of
it is word-for-word in each quote and, when one quote clearly holds it, cites that one: the answer then
ends with ` [n]` and the response says the citation was added by kb, not written by the model.

Larger models cite, but not always the right quote: Qwen2.5-Coder-1.5B often copies a sentence of quote
[1] and ends it with [2] or [3]. Each citation is checked against the words written since the previous
one (its claim): when the cited quote holds few of them and another quote clearly holds them, the number
is changed to that quote's (`checked_numbers`). `CitationChecker` does it while the answer streams, so the
reader never sees the wrong number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from kb.rag.focus import ENGLISH_STOP_WORDS

CITATION = re.compile(r"[\[【]\s*(\d{1,3}(?:\s*[,，、;；]\s*\d{1,3})*)\s*[\]】]")
CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# One token per Chinese character; other words are runs of letters and digits that stop at a Chinese character
# (else "1975年由泰国…" would be one token and never match a copy of it).
TOKEN = re.compile(rf"[{CJK}]|[^\W_{CJK}]+", re.UNICODE)
NGRAM = 3
# Re-pointing (measured on bench/answer.py's replies, BENCHMARKS.md "Answers"): the cited quote holds under half
# of the claim's words, another at least 70%, and 0.3 more. Words are content words in English (stop words
# dropped) and character pairs in Chinese; a claim of fewer than 3 is too short to tell.
UNSUPPORTED = 0.5
SUPPORTED = 0.7
SUPPORT_MARGIN = 0.3
MIN_CLAIM_WORDS = 3
MARK_START = re.compile(r"[\[【]")
PARTIAL_MARK = re.compile(r"[\[【][\s\d,，、;；]{0,40}")  # what may still become a citation as more text arrives
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


def _claim_words(text: str) -> set[str]:
    """Content words of English text (stop words dropped) and character pairs of Chinese runs, lower-cased."""
    words: set[str] = set()
    for run in re.findall(rf"[{CJK}]+|[^\W_{CJK}]+", CITATION.sub(" ", text).lower()):
        if re.match(rf"[{CJK}]", run):
            words |= {run[i : i + 2] for i in range(len(run) - 1)} if len(run) > 1 else {run}
        elif run not in ENGLISH_STOP_WORDS:
            words.add(run)
    return words


def checked_numbers(claim: str, numbers: Sequence[int], quotes: Sequence[str]) -> list[int]:
    """The quote numbers a citation of `claim` should carry: `numbers`, or the one other quote that clearly holds it."""
    wanted = _claim_words(claim)
    if len(wanted) < MIN_CLAIM_WORDS or not numbers or not all(1 <= n <= len(quotes) for n in numbers):
        return list(numbers)
    shares = [len(wanted & _claim_words(quote)) / len(wanted) for quote in quotes]
    cited = max(shares[n - 1] for n in numbers)
    best = max(range(len(shares)), key=lambda i: (shares[i], -i))
    if cited < UNSUPPORTED and shares[best] >= SUPPORTED and shares[best] - cited >= SUPPORT_MARGIN:
        return [best + 1]
    return list(numbers)


class CitationChecker:
    """Streams an answer through, holding back a citation until it is complete and writing it re-pointed if needed.

    `feed` returns the text that can be shown now; `finish` the rest. `corrections` lists each re-pointed citation's
    numbers as written and as shown.
    The text shown is `check_citations` of the whole answer, however it was cut into pieces.
    """

    def __init__(self, quotes: Sequence[str]):
        self.quotes = list(quotes)
        self.corrections: list[tuple[list[int], list[int]]] = []
        self._claim: list[str] = []
        self._pending = ""

    def feed(self, text: str, *, final: bool = False) -> str:
        pending, shown = self._pending + text, []
        while (start := MARK_START.search(pending)) is not None:
            i = start.start()
            self._claim.append(pending[:i])
            shown.append(pending[:i])
            mark = CITATION.match(pending, i)
            if mark is None:
                if not final and PARTIAL_MARK.fullmatch(pending, i):
                    pending = pending[i:]
                    break
                self._claim.append(pending[i])
                shown.append(pending[i])
                pending = pending[i + 1 :]
                continue
            shown.append(self._mark(mark))
            pending = pending[mark.end() :]
        else:
            self._claim.append(pending)
            shown.append(pending)
            pending = ""
        self._pending = pending
        return "".join(shown)

    def finish(self) -> str:
        return self.feed("", final=True)

    def _mark(self, mark: re.Match) -> str:
        numbers = [int(part) for part in re.split(r"[,，、;；]", mark.group(1))]
        checked = checked_numbers("".join(self._claim), numbers, self.quotes)
        self._claim = []
        if checked == numbers:
            return mark.group(0)
        self.corrections.append((numbers, checked))
        text, offset = mark.group(0), mark.start(1) - mark.start()
        return text[:offset] + ", ".join(map(str, checked)) + text[offset + len(mark.group(1)) :]


def check_citations(text: str, quotes: Sequence[str]) -> tuple[str, list[tuple[list[int], list[int]]]]:
    """The answer with each citation re-pointed where its quote does not hold its claim, and those re-pointed."""
    checker = CitationChecker(quotes)
    checked = checker.feed(text, final=True)
    return checked, checker.corrections
