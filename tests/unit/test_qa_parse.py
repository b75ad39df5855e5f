"""QA split: the prompt asks for grounded pairs in the text's language; the parser survives odd model output."""

from __future__ import annotations

import pytest

from kb.ingest.qa import build_qa_messages, detect_language, parse_qa_pairs


def test_prompt_asks_for_numbered_pairs_grounded_in_the_text():
    messages = build_qa_messages("The Alps are a mountain range in Europe.", max_pairs=3)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "only facts stated in the passage" in messages[0]["content"]
    assert "The Alps are a mountain range in Europe." in messages[1]["content"]
    assert "up to 3 questions" in messages[1]["content"]
    assert "Q1:" in messages[1]["content"] and "A1:" in messages[1]["content"]


def test_prompt_for_chinese_text_is_written_in_chinese():
    messages = build_qa_messages("阿尔卑斯山是欧洲的一条山脉，跨越八个国家。")
    assert "用中文书写" in messages[0]["content"]
    assert "最多5个" in messages[1]["content"]


def test_explicit_language_overrides_detection():
    assert "Write in English" in build_qa_messages("阿尔卑斯山是欧洲的山脉。", language="en")[0]["content"]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("What is the capital of France?", "en"),
        ("法国的首都是哪里？", "zh"),
        ("什么是RAG技术？", "zh"),
        ("What does 你好 mean in English?", "en"),
        ("12345 !!!", "en"),
    ],
)
def test_detect_language(text, language):
    assert detect_language(text) == language


def test_strict_numbered_format():
    reply = "Q1: Where are the Alps?\nA1: In Europe.\nQ2: How long are they?\nA2: About 1,200 km."
    assert parse_qa_pairs(reply) == [("Where are the Alps?", "In Europe."), ("How long are they?", "About 1,200 km.")]


def test_leading_chatter_and_blank_lines_are_ignored():
    reply = "Sure! Here are some questions based on the text:\n\nQ1: Where are the Alps?\n\nA1: In Europe.\n\n\nQ2: Who crossed them?\nA2: Hannibal."
    assert parse_qa_pairs(reply) == [("Where are the Alps?", "In Europe."), ("Who crossed them?", "Hannibal.")]


def test_unnumbered_and_spelled_out_labels():
    reply = "Q: What is pgvector?\nA: A PostgreSQL extension.\nQuestion: What index does it offer?\nAnswer: HNSW."
    assert parse_qa_pairs(reply) == [
        ("What is pgvector?", "A PostgreSQL extension."),
        ("What index does it offer?", "HNSW."),
    ]


def test_chinese_labels_with_full_width_colons():
    reply = "问题1：阿尔卑斯山在哪里？\n答案1：在欧洲。\n问：它有多长？\n答：约1200公里。"
    assert parse_qa_pairs(reply) == [("阿尔卑斯山在哪里？", "在欧洲。"), ("它有多长？", "约1200公里。")]


def test_markdown_bold_labels():
    reply = "**Q1:** What is kb?\n**A1:** A knowledge-base service.\n**Q2**: Is it self-hosted?\n**A2**: Yes."
    assert parse_qa_pairs(reply) == [("What is kb?", "A knowledge-base service."), ("Is it self-hosted?", "Yes.")]


def test_multi_line_answer_keeps_its_lines():
    reply = "Q1: What are the steps?\nA1: First, open the form.\nThen sign it.\n\n- and send it back\nQ2: Who signs?\nA2: The buyer."
    pairs = parse_qa_pairs(reply)
    assert pairs[0] == ("What are the steps?", "First, open the form.\nThen sign it.\n\n- and send it back")
    assert pairs[1] == ("Who signs?", "The buyer.")


def test_duplicate_questions_are_kept_once():
    reply = "Q1: Where are the Alps?\nA1: In Europe.\nQ2: where are the alps\nA2: Europe."
    assert parse_qa_pairs(reply) == [("Where are the Alps?", "In Europe.")]


def test_pairs_with_empty_answers_are_dropped():
    reply = "Q1: Where are the Alps?\nA1:\nQ2: Who crossed them?\nA2: Hannibal.\nQ3: A question with no answer label"
    assert parse_qa_pairs(reply) == [("Who crossed them?", "Hannibal.")]


def test_the_prompts_own_placeholders_copied_back_are_not_pairs():
    # SmolLM2 on Chinese chunks (bench/qagen.py): 4 of its 5 "pairs" were the format line itself
    reply = "Q1: <问题>\nA1: <答案>\nQ2: <question>\nA2: <answer>\nQ3: <问题>\nA3: 1984年播出\nQ4: 谁制作了它？\nA4: Studio Pierrot"
    assert parse_qa_pairs(reply) == [("谁制作了它？", "Studio Pierrot")]
    assert parse_qa_pairs("Q1: 它叫什么？\nA1: 《宇宙奇兵》") == [
        ("它叫什么？", "《宇宙奇兵》")
    ]  # a title is an answer


def test_text_without_pairs_gives_an_empty_list():
    assert parse_qa_pairs("I'm sorry, I cannot help with that.") == []
    assert parse_qa_pairs("") == []


# Hand-written imitations of what small chat models (SmolLM2-135M and friends) tend to write.
ODD_OUTPUTS = [
    pytest.param(
        "1. Q: What is the Eiffel Tower made of?\n   A: Wrought iron.\n2. Q: Where is it?\n   A: Paris.",
        [("What is the Eiffel Tower made of?", "Wrought iron."), ("Where is it?", "Paris.")],
        id="numbered-list-with-indented-answers",
    ),
    pytest.param(
        "Q1: What is the Eiffel Tower made of? A1: Wrought iron.\nQ2: Where is it? A2: Paris.",
        [("What is the Eiffel Tower made of?", "Wrought iron."), ("Where is it?", "Paris.")],
        id="question-and-answer-on-one-line",
    ),
    pytest.param(
        "Q1. When was it built?\nA1. In 1889.",
        [("When was it built?", "In 1889.")],
        id="periods-instead-of-colons",
    ),
    pytest.param(
        "### Question 1: When was it built?\n**Answer 1:** In 1889.\n\nI hope this helps! Let me know if you need more.",
        [("When was it built?", "In 1889.")],
        id="markdown-heading-and-closing-chatter",
    ),
    pytest.param(
        "Q1: When was it built?\nA1: In 1889.\nA1: It opened for the World's Fair.",
        [("When was it built?", "In 1889.\nIt opened for the World's Fair.")],
        id="repeated-answer-label",
    ),
    pytest.param(
        "Q1: Who designed\nthe tower?\nA1: Gustave Eiffel's company.",
        [("Who designed\nthe tower?", "Gustave Eiffel's company.")],
        id="question-wrapped-over-two-lines",
    ),
    pytest.param(
        'Here you go:\n[{"question": "When was it built?", "answer": "1889"}, {"question": "", "answer": "x"}]',
        [("When was it built?", "1889")],
        id="json-list",
    ),
    pytest.param(
        'Q1: "When was it built?"\nA1: "In 1889."',
        [("When was it built?", "In 1889.")],
        id="quoted",
    ),
    pytest.param(
        "问题一：埃菲尔铁塔建于哪一年？\n答案一：1889年。\n\n以上是根据文本生成的问答。",
        [("埃菲尔铁塔建于哪一年？", "1889年。")],
        id="chinese-numerals-and-closing-remark",
    ),
    pytest.param(
        "A1: An answer before any question.\nQ1: Real question?\nA1: Real answer.",
        [("Real question?", "Real answer.")],
        id="answer-before-question",
    ),
    pytest.param(
        "Q1: What colour is it?\nA1: Brown.\nQ1: What colour is it?\nA1: Brown.\nQ1: What colour is it?\nA1: Brown.",
        [("What colour is it?", "Brown.")],
        id="model-stuck-in-a-loop",
    ),
]


@pytest.mark.parametrize(("reply", "expected"), ODD_OUTPUTS)
def test_odd_small_model_outputs(reply, expected):
    assert parse_qa_pairs(reply) == expected
