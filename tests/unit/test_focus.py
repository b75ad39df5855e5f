"""Focused quotes: the sentences of the retrieved chunks that match the question, kept under their own quote."""

from __future__ import annotations

from kb.rag.focus import focus_quotes, join_sentences, question_words, sentences

PUB = (
    "By the end of the century almost all beer was brewed by commercial breweries. "
    "Gin was brought to England by the Dutch after the Glorious Revolution of 1688. "
    "Over half of the drinking establishments in London were gin shops."
)
ACTS = "The Gin Act 1736 imposed high taxes on retailers. The Gin Act 1751 was more successful."


def test_sentences_split_after_english_and_chinese_sentence_ends_and_join_back_unchanged():
    assert sentences("It is 31 m tall.  Its lamp is bright! Why? 3.5 km away") == [
        "It is 31 m tall.",
        "Its lamp is bright!",
        "Why?",
        "3.5 km away",
    ]
    chinese = "乍都节公园位于曼谷。面积约为0.304平方公里！由泰国国家铁路局捐献土地。"
    assert sentences(chinese) == ["乍都节公园位于曼谷。", "面积约为0.304平方公里！", "由泰国国家铁路局捐献土地。"]
    assert join_sentences(sentences(chinese)) == chinese
    assert join_sentences(sentences(PUB)) == PUB


def test_abbreviations_initials_and_a_lower_case_continuation_do_not_end_a_sentence():
    text = (
        "Henry spoke at St. John's Church in 1775. J. K. Rowling was born in the U.S. army town. e.g. this one. Done."
    )
    assert sentences(text) == [
        "Henry spoke at St. John's Church in 1775.",
        "J. K. Rowling was born in the U.S. army town. e.g. this one.",
        "Done.",
    ]


def test_question_words_drop_english_stop_words_and_chinese_question_words():
    assert question_words("What people introduced gin to England?") == {"people", "introduced", "gin", "england"}
    assert {"公园", "面积"} <= question_words("乍都节公园的面积有多大？")
    assert not {"什么", "的", "是"} & question_words("乍都节公园是什么的？")


def test_the_best_matching_sentence_of_all_quotes_is_kept_under_its_own_quote():
    [focused] = focus_quotes([ACTS, PUB], "Who brought gin to England?", 1)
    assert (focused.index, focused.text) == (
        1,
        "Gin was brought to England by the Dutch after the Glorious Revolution of 1688.",
    )


def test_rare_question_words_count_more_than_words_every_sentence_shares():
    # "gin" is in four of the five sentences, "taxes" in one: the tax sentence wins though both match one word.
    [focused] = focus_quotes([PUB, ACTS], "Which gin law raised taxes?", 1)
    assert focused.text == "The Gin Act 1736 imposed high taxes on retailers."


def test_kept_sentences_stay_in_their_quotes_order_and_ties_go_to_the_higher_ranked_quote():
    focused = focus_quotes([PUB, ACTS], "gin", 3)
    assert [(f.index, f.text) for f in focused] == [
        (
            0,
            "Gin was brought to England by the Dutch after the Glorious Revolution of 1688. "
            "Over half of the drinking establishments in London were gin shops.",
        ),
        (1, "The Gin Act 1736 imposed high taxes on retailers."),
    ]


def test_a_chinese_question_is_matched_on_its_jieba_words():
    quotes = ["乍都节公园位于曼谷。由泰国国家铁路局捐献土地建造。公园面积约为0.304平方公里。"]
    [focused] = focus_quotes(quotes, "乍都节公园是由谁捐献土地建造出来的？", 1)
    assert focused.text == "由泰国国家铁路局捐献土地建造。"
