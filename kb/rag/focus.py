"""Focused quotes: of all retrieved chunks, only the few sentences that match the question best.

A chunk is ~250 tokens, and usually one sentence of it answers the question. A small chat model
(SmolLM2-135M) shown five whole chunks loses the answer among them and makes one up; shown the two
sentences that match the question, it mostly answers from them (bench/answer.py, BENCHMARKS.md).
A sentence scores the question's content words it contains, each weighted by how rare it is among
the candidate sentences (a word every sentence has tells nothing); ties go to the higher-ranked quote.
Chosen sentences stay under their own quote, in their original order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from kb.db.textsearch import QUERY_STOP_WORDS, has_cjk, tokenizer_for

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)|(?<=[。！？；])")
CJK_END = re.compile(r"[。！？；]$")
# A period after these ends an abbreviation or an initial, not a sentence ("St. John's Church", "J. K. Rowling").
ABBREVIATION_END = re.compile(
    r"(?:^|[\s(])(?:[A-Z]|St|Mt|Ft|Mr|Mrs|Ms|Dr|Prof|Jr|Sr|Gen|Col|Capt|Lt|Gov|Sen|Rep|Rev|Inc|Ltd|Co|Corp|No|vs"
    r"|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|e\.g|i\.e|a\.m|p\.m|U\.S|U\.K)\.$"
)
WORD = re.compile(r"[^\W_]+", re.UNICODE)
CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
ENGLISH_STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "from",
        "by",
        "with",
        "as",
        "and",
        "or",
        "but",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "do",
        "does",
        "did",
        "has",
        "have",
        "had",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "there",
        "their",
        "they",
        "he",
        "she",
        "his",
        "her",
        "not",
        "no",
        "than",
        "then",
        "so",
        "such",
        "can",
        "could",
        "would",
        "should",
        "will",
        "may",
        "might",
        "must",
        "into",
        "about",
        "over",
        "after",
        "before",
    ]
)


@dataclass(frozen=True)
class FocusedQuote:
    """The sentences kept from one quote: `index` is the quote's position in the list given."""

    index: int
    text: str


def sentences(text: str) -> list[str]:
    """The text's sentences: split after . ! ? and a space, and after 。！？；, but not after an abbreviation or
    an initial, nor before a lower-case letter."""
    pieces: list[str] = []
    for piece in (p.strip() for p in SENTENCE_END.split(" ".join(text.split()))):
        if not piece:
            continue
        if pieces and (ABBREVIATION_END.search(pieces[-1]) or piece[0].islower()):
            pieces[-1] = f"{pieces[-1]} {piece}"
        else:
            pieces.append(piece)
    return pieces


def join_sentences(parts: Sequence[str]) -> str:
    """Sentences back into text: a space after English ones, nothing after Chinese punctuation."""
    return "".join(part if not i or CJK_END.search(parts[i - 1]) else " " + part for i, part in enumerate(parts))


def question_words(question: str) -> set[str]:
    """What the question asks about: its content words, lower-cased (Chinese ones cut by jieba)."""
    words = {w for w in WORD.findall(CJK_RUN.sub(" ", question).lower()) if w not in ENGLISH_STOP_WORDS}
    if has_cjk(question):
        cut = tokenizer_for().cut
        words |= {w for run in CJK_RUN.findall(question) for w in cut(run) if w.strip() and w not in QUERY_STOP_WORDS}
    return words


def _words_in(sentence: str, wanted: set[str]) -> set[str]:
    lowered = sentence.lower()
    latin = set(WORD.findall(CJK_RUN.sub(" ", lowered)))
    return {w for w in wanted if (w in lowered if has_cjk(w) else w in latin)}


def focus_quotes(quotes: Sequence[str], question: str, keep: int) -> list[FocusedQuote]:
    """The `keep` sentences of all quotes that match the question best, grouped under their quotes in rank order."""
    wanted = question_words(question)
    candidates = [
        (index, position, sentence)
        for index, quote in enumerate(quotes)
        for position, sentence in enumerate(sentences(quote))
    ]
    found = [_words_in(sentence, wanted) for _, _, sentence in candidates]
    weight = {w: math.log(1 + len(candidates) / (1 + sum(w in words for words in found))) for w in wanted}
    score = [sum(weight[w] for w in words) for words in found]
    chosen = sorted(sorted(range(len(candidates)), key=lambda i: -score[i])[:keep])
    return [
        FocusedQuote(index, join_sentences([candidates[i][2] for i in chosen if candidates[i][0] == index]))
        for index in dict.fromkeys(candidates[i][0] for i in chosen)
    ]
