"""Checking the model's citations: a number whose quote does not hold its sentence points to the quote that does."""

from __future__ import annotations

import random

import pytest

from kb.ml.types import StreamDelta
from kb.rag.answer import Answer, AnswerConfig, RetrievedQuote, answer_question
from kb.rag.citations import CitationChecker, check_citations, checked_numbers
from kb.testing import ScriptedChatModel

TOWER = "The Norrvik tower was finished in 1889 for the fair. It is 330 metres tall."
RIVER = "The Ossa river is 776 km long and flows into the northern sea."
TOWER_ZH = "诺维克塔于1889年为博览会建成。塔高330米，是当时世界上最高的建筑。"
RIVER_ZH = "奥萨河全长776公里，流入北海。"


def test_a_citation_of_a_quote_without_its_sentence_points_to_the_quote_that_holds_it():
    assert checked_numbers("The Norrvik tower is 330 metres tall. ", [2], [TOWER, RIVER]) == [1]
    assert checked_numbers("诺维克塔高330米，是当时世界上最高的建筑。", [2], [TOWER_ZH, RIVER_ZH]) == [1]


@pytest.mark.parametrize(
    ("claim", "numbers"),
    [
        ("The Norrvik tower is 330 metres tall. ", [1]),  # right already
        ("The Norrvik tower is 330 metres tall. ", [2, 1]),  # one of the cited quotes holds it
        ("It is tall. ", [2]),  # too few words to tell
        ("The Norrvik river flows 776 km to the fair. ", [2]),  # the words are spread over both quotes
        ("Towers are often built for fairs, and rivers are long. ", [1]),  # no quote holds it
        ("The Norrvik tower is 330 metres tall. ", [3]),  # no quote 3: left for the reader to see
    ],
)
def test_a_citation_stays_as_written_unless_another_quote_clearly_holds_its_sentence(claim, numbers):
    assert checked_numbers(claim, numbers, [TOWER, RIVER]) == numbers


def test_each_citation_is_checked_against_the_words_since_the_one_before():
    text = "The Norrvik tower is 330 metres tall [2]. The Ossa river is 776 km long [2]."
    assert check_citations(text, [TOWER, RIVER]) == (
        "The Norrvik tower is 330 metres tall [1]. The Ossa river is 776 km long [2].",
        [([2], [1])],
    )
    # The bracket style and the spaces the model wrote are kept.
    assert check_citations("诺维克塔高330米，是当时世界上最高的建筑。【 2 】", [TOWER_ZH, RIVER_ZH]) == (
        "诺维克塔高330米，是当时世界上最高的建筑。【 1 】",
        [([2], [1])],
    )


ODD = (
    "The Norrvik tower is 330 metres tall [2]. Prices [a] rose [1 and fell. [1, 2] The Ossa river is 776 km "
    "long and flows into the northern sea 【1】 [12] [3"
)


@pytest.mark.parametrize("seed", range(20))
def test_the_streamed_answer_is_the_checked_answer_however_it_is_cut(seed):
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(ODD)), rng.randint(1, 25)))
    pieces = [ODD[a:b] for a, b in zip([0, *cuts], [*cuts, len(ODD)])]
    checker = CitationChecker([TOWER, RIVER])
    streamed = "".join(checker.feed(piece) for piece in pieces) + checker.finish()
    expected, corrected = check_citations(ODD, [TOWER, RIVER])
    assert streamed == expected and checker.corrections == corrected == [([2], [1]), ([1], [2])]
    assert "[1]. Prices [a] rose [1 and fell." in expected and expected.endswith("【2】 [12] [3")


def test_a_citation_is_held_back_until_it_is_complete():
    checker = CitationChecker([TOWER, RIVER])
    assert checker.feed("The Norrvik tower is 330 metres tall [") == "The Norrvik tower is 330 metres tall "
    assert checker.feed("2") == ""
    assert checker.feed("]. Next") == "[1]. Next"
    assert checker.feed(" [x") == " [x"  # not a citation: shown at once


def _quote(chunk_id: int, text: str) -> RetrievedQuote:
    return RetrievedQuote(chunk_id=chunk_id, collection_id=2, source="facts.md", score=0.8, q=text)


def _answer(reply: str, config: AnswerConfig | None = None) -> tuple[str, Answer]:
    quotes = [_quote(1, TOWER), _quote(2, RIVER)]
    items = list(
        answer_question(
            "How tall is the Norrvik tower?",
            model=ScriptedChatModel([reply]),
            retrieve=lambda query: quotes,
            config=config or AnswerConfig(),
        )
    )
    *deltas, answer = items
    assert all(isinstance(d, StreamDelta) for d in deltas) and isinstance(answer, Answer)
    return "".join(d.text for d in deltas), answer


def test_an_answer_streams_and_keeps_the_re_pointed_citation_and_says_how_many_were():
    streamed, answer = _answer("The Norrvik tower is 330 metres tall. [2]")
    assert streamed == answer.text == "The Norrvik tower is 330 metres tall. [1]"
    assert answer.cited == [1] and answer.cited_by == "model" and answer.corrected_citations == [([2], [1])]


def test_checking_citations_can_be_turned_off():
    streamed, answer = _answer("The Norrvik tower is 330 metres tall. [2]", AnswerConfig(check_citations=False))
    assert streamed == answer.text == "The Norrvik tower is 330 metres tall. [2]"
    assert answer.cited == [2] and answer.corrected_citations == []
