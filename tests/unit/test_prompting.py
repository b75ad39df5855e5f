"""The quote prompt: numbering, language rules and the context budget, measured with the model's tokenizer."""

from __future__ import annotations

import pytest

from kb.errors import BadRequest
from kb.rag.prompting import PromptQuote, build_quote_prompt, cut_to_tokens, detect_language, quote_line
from kb.testing import EchoChatModel


def quote(words: int, tag: str = "w", source: str = "doc.md", page: int | None = None) -> PromptQuote:
    return PromptQuote(" ".join(f"{tag}{i}" for i in range(words)), source, page)


def history(turns: int, words: int = 10) -> list[dict]:
    messages = []
    for turn in range(turns):
        messages.append({"role": "user", "content": f"question{turn} " + "x " * words})
        messages.append({"role": "assistant", "content": f"answer{turn} " + "y " * words})
    return messages


def test_quotes_are_numbered_with_source_and_page_and_the_question_comes_last():
    model = EchoChatModel()
    prompt = build_quote_prompt(
        question="What is HNSW?",
        quotes=[PromptQuote("HNSW is a graph index.", "index.md", 3), PromptQuote("pgvector stores vectors.", "pg.md")],
        counter=model,
        answer_tokens=100,
        quote_budget=500,
    )
    [user] = prompt.messages  # no app system prompt: the chat template's default applies
    quotes, rules, question = user["content"].split("\n\n")
    assert quotes.splitlines() == [
        "Quotes:",
        "[1] (index.md, p. 3) HNSW is a graph index.",
        "[2] (pg.md) pgvector stores vectors.",
    ]
    assert "only the quotes" in rules and "[1]" in rules and "don't know" in rules and "Answer in English." in rules
    assert question == "Question: What is HNSW?"
    assert prompt.language == "en" and prompt.prompt_tokens == model.count_prompt_tokens(prompt.messages)


def test_the_app_system_prompt_is_the_system_message_and_general_knowledge_relaxes_the_rules():
    prompt = build_quote_prompt(
        question="Why?",
        quotes=[quote(5)],
        counter=EchoChatModel(),
        answer_tokens=10,
        quote_budget=100,
        system_prompt="You are Ada, the support bot.",
        allow_general_knowledge=True,
    )
    system, user = prompt.messages
    assert system == {"role": "system", "content": "You are Ada, the support bot."}
    assert "own knowledge" in user["content"] and "only the quotes" not in user["content"]


@pytest.mark.parametrize(
    ("question", "words"), [("Why?", "in the words of the quotes"), ("为什么？", "尽量使用引用的原文")]
)
def test_rules_in_the_system_message_follow_the_app_prompt_and_leave_quotes_and_question_to_the_user_turn(
    question, words
):
    """The system message is the same for every question of an app: a prefix the engine's prompt cache reuses."""
    asked = [
        build_quote_prompt(
            question=q,
            quotes=[quote(5, tag=q[:1])],
            counter=EchoChatModel(),
            answer_tokens=10,
            quote_budget=100,
            system_prompt="You are Ada.",
            rules_in_system=True,
        )
        for q in (question, question + " " + question)
    ]
    system, example_question, example_answer, user = asked[0].messages
    assert system["content"].startswith("You are Ada.\n\n") and words in system["content"]
    # One worked exchange shows the answer's shape (the quote's words, its number at the end), same for every question.
    assert example_question["role"] == "user" and example_answer["role"] == "assistant"
    assert example_question["content"].splitlines()[1].startswith("[1] (") and example_answer["content"].endswith("[1]")
    assert asked[1].messages[:3] == [system, example_question, example_answer]
    assert user["content"].splitlines()[1].startswith("[1] (doc.md)") and user["content"].endswith(question)
    assert words not in user["content"]


def test_the_worked_example_is_in_the_question_language_and_only_where_the_rules_are_in_the_system_message():
    def messages(question: str, rules_in_system: bool) -> list[dict]:
        return build_quote_prompt(
            question=question,
            quotes=[quote(5)],
            counter=EchoChatModel(),
            answer_tokens=10,
            quote_budget=100,
            rules_in_system=rules_in_system,
        ).messages

    assert messages("北京是哪个国家的首都？", True)[2]["content"].endswith("。[1]")
    assert messages("Where is Beijing?", True)[2]["content"].endswith(". [1]")
    assert [m["role"] for m in messages("Where is Beijing?", False)] == ["user"]  # small models: no example


def test_a_chinese_question_gets_chinese_rules_and_an_instruction_to_answer_in_chinese():
    prompt = build_quote_prompt(
        question="北京是哪个国家的首都？",
        quotes=[PromptQuote("北京是中国的首都。", "城市.md", 2)],
        counter=EchoChatModel(),
        answer_tokens=50,
        quote_budget=200,
    )
    assert prompt.language == "zh"
    assert "请用中文回答。" in prompt.messages[-1]["content"]
    assert "[1] (城市.md, 第2页) 北京是中国的首都。" in prompt.messages[-1]["content"]
    assert prompt.messages[-1]["content"].endswith("问题： 北京是哪个国家的首都？")


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("What is RAG?", "en"),
        ("RAG 是什么？", "zh"),
        ("知识库怎么用", "zh"),
        ("Explain 向量 search in pgvector", "en"),
        ("", "en"),
    ],
)
def test_language_is_detected_from_chinese_characters_against_latin_words(text, language):
    assert detect_language(text) == language


def test_quotes_beyond_the_quote_budget_are_cut_then_dropped_in_rank_order():
    model = EchoChatModel()
    quotes = [quote(40, "a"), quote(40, "b"), quote(40, "c")]
    first_cost = model.count_tokens(quote_line(1, quotes[0], "en") + "\n")
    prompt = build_quote_prompt(
        question="q?", quotes=quotes, counter=model, answer_tokens=10, quote_budget=first_cost + 40
    )
    assert [q.text.split()[0] for q in prompt.quotes] == ["a0", "b0"]
    assert prompt.quotes[0] == quotes[0]
    assert prompt.cut_quotes == [2] and prompt.quotes[1].text.endswith("…")
    assert model.count_tokens(quote_line(2, prompt.quotes[1], "en") + "\n") <= 40
    assert prompt.dropped_quotes == 1


def test_a_quote_that_would_be_cut_to_a_sliver_is_dropped_instead():
    model = EchoChatModel()
    quotes = [quote(40, "a"), quote(40, "b")]
    first_cost = model.count_tokens(quote_line(1, quotes[0], "en") + "\n")
    prompt = build_quote_prompt(
        question="q?", quotes=quotes, counter=model, answer_tokens=10, quote_budget=first_cost + 10
    )
    assert prompt.quotes == [quotes[0]] and prompt.cut_quotes == []


def test_the_context_limits_quotes_even_when_the_quote_budget_is_larger():
    model = EchoChatModel(context_length=200)
    prompt = build_quote_prompt(
        question="q?", quotes=[quote(100, "a"), quote(100, "b")], counter=model, answer_tokens=50, quote_budget=5000
    )
    assert prompt.prompt_tokens + 50 <= 200
    assert len(prompt.quotes) == 1 and prompt.cut_quotes == [1]


def test_history_is_dropped_oldest_first_and_whole_turns_are_kept():
    model = EchoChatModel(context_length=200)
    prompt = build_quote_prompt(
        question="last?",
        quotes=[quote(20)],
        counter=model,
        answer_tokens=50,
        quote_budget=100,
        history=history(4, words=12),
        max_history_turns=10,
    )
    past = prompt.messages[:-1]
    assert 0 < len(past) < 8 and len(past) % 2 == 0
    assert past[-1]["content"].startswith("answer3") and past[0]["role"] == "user"
    assert prompt.dropped_history_messages == 8 - len(past)
    assert prompt.prompt_tokens + 50 <= 200
    assert len(prompt.quotes) == 1  # quotes outrank history


def test_only_the_most_recent_turns_are_kept_even_with_room_to_spare():
    prompt = build_quote_prompt(
        question="q?",
        quotes=[],
        counter=EchoChatModel(),
        answer_tokens=10,
        quote_budget=100,
        history=history(6),
        max_history_turns=2,
    )
    assert [m["content"].split()[0] for m in prompt.messages[:-1]] == ["question4", "answer4", "question5", "answer5"]
    assert prompt.dropped_history_messages == 8


def test_a_long_question_is_never_cut_quotes_and_history_give_way():
    model = EchoChatModel(context_length=320)
    question = "why " * 200 + "really?"
    prompt = build_quote_prompt(
        question=question,
        quotes=[quote(100)],
        counter=model,
        answer_tokens=50,
        quote_budget=500,
        history=history(3),
    )
    assert prompt.messages[-1]["content"].endswith(question)
    assert prompt.quotes == [] and prompt.history_messages == 0
    assert prompt.prompt_tokens + 50 <= 320


def test_a_question_too_long_for_the_context_is_refused_with_a_clear_message():
    with pytest.raises(BadRequest, match="ask a shorter question") as error:
        build_quote_prompt(
            question="why " * 400,
            quotes=[],
            counter=EchoChatModel(context_length=300),
            answer_tokens=50,
            quote_budget=100,
        )
    assert error.value.code == "context_length_exceeded"


def test_cutting_text_to_tokens_keeps_the_longest_prefix_that_fits():
    model = EchoChatModel()
    text = "one two three four five six"
    assert cut_to_tokens(text, 100, model.count_tokens) == text
    cut = cut_to_tokens(text, 4, model.count_tokens)
    assert cut == "one two three…" and model.count_tokens(cut) == 4
