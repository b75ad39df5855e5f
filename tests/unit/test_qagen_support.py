"""bench/qagen.py's verdicts: when a generated answer counts as supported by its chunk."""

from __future__ import annotations

import pytest

from bench.qagen import all_chinese, is_echo, strictly_supported, token_coverage


@pytest.mark.parametrize(
    ("answer", "chunk", "expected"),
    [
        ("the Denver Broncos.", "In 2016 the Denver  Broncos won Super Bowl 50.", True),  # case, spaces, punctuation
        ("Broncos", "The DenverBroncos won.", False),  # not a whole word
        ("50", "Super Bowl 500", False),  # not a whole number
        ("1974年", "他在1974 年出生。", True),  # a space next to a Chinese character does not count
        ("丹佛野马", "丹佛野马队赢得了比赛", True),  # Chinese words have no boundaries
        ("NFL", "NFL的比赛", True),
        ("", "anything", False),
        ("No", "There was no consensus.", False),  # a bare yes/no answer is in almost every chunk
        ("是", "林永康是香港人", False),
        ("They won in 2015.", "In 2016 the Denver Broncos won.", False),
    ],
)
def test_strict_support_is_the_normalised_answer_inside_the_normalised_chunk(answer, chunk, expected):
    assert strictly_supported(answer, chunk) is expected


def test_lenient_support_counts_content_tokens_and_ignores_stop_words():
    chunk = "In 2016 the Denver Broncos beat the Carolina Panthers to win Super Bowl 50."
    assert token_coverage("The Broncos won Super Bowl 50 against the Panthers", chunk) == pytest.approx(5 / 7)
    assert token_coverage("Broncos beat Panthers", chunk) == 1.0
    assert token_coverage("野马队", "丹佛野马队赢了") == 1.0
    assert token_coverage("the", chunk) == 0.0  # no content token: unsupported


def test_a_chinese_chunk_counts_as_answered_in_chinese_only_when_every_pair_is():
    assert all_chinese([("谁赢了？", "丹佛野马队")])
    assert not all_chinese([("谁赢了？", "丹佛野马队"), ("Who won?", "The Broncos")])


def test_a_pair_whose_question_is_its_answer_is_an_echo():
    assert is_echo("3分以下表示情况危殆。", "3分以下表示情况危殆")
    assert not is_echo("比尔·兰比尔的体重是多少？", "118公斤")
