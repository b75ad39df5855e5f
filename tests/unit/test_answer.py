"""Answering one question: the not-found path, citations, follow-up rewriting, timings and usage."""

from __future__ import annotations

import pytest

from kb.errors import UpstreamError
from kb.ml.types import StreamDelta, final_completion
from kb.rag.answer import Answer, AnswerConfig, RetrievedQuote, answer_question
from kb.rag.citations import copied_share, extract_citations, source_of_copy
from kb.rag.rewrite import clean_rewrite, rewrite_question
from kb.testing import ScriptedChatModel

TOWER = RetrievedQuote(
    chunk_id=7, collection_id=2, source="paris.md", score=0.83, q="The Eiffel Tower was built in 1889.", page=4
)
LOUVRE = RetrievedQuote(
    chunk_id=9, collection_id=2, source="paris.md", score=0.41, q="The Louvre is a museum.", a="It opened in 1793."
)
LANDMARKS = RetrievedQuote(  # one sentence of three answers "when was it built?"
    chunk_id=7,
    collection_id=2,
    source="paris.md",
    score=0.8,
    page=4,
    q="Paris has many landmarks. The tower was built in 1889 for a world's fair. It is 330 metres tall.",
)


class Searches:
    """A retriever over fixed quotes that records what it was asked."""

    def __init__(self, quotes: list[RetrievedQuote]):
        self.quotes = quotes
        self.queries: list[str] = []

    def __call__(self, query: str) -> list[RetrievedQuote]:
        self.queries.append(query)
        return self.quotes


def run(stream) -> tuple[str, Answer]:
    items = list(stream)
    *deltas, answer = items
    assert all(isinstance(d, StreamDelta) for d in deltas) and isinstance(answer, Answer)
    return "".join(d.text for d in deltas), answer


def test_the_answer_carries_the_quotes_shown_and_which_were_cited():
    model = ScriptedChatModel(["It was built in 1889 [1]."])
    streamed, answer = run(
        answer_question("When was the Eiffel Tower built?", model=model, retrieve=Searches([TOWER, LOUVRE]))
    )
    assert streamed == answer.text == "It was built in 1889 [1]."
    assert answer.cited == [1] and answer.cited_by == "model" and not answer.not_found
    first, second = answer.quotes
    assert (first.number, first.chunk_id, first.source, first.page, first.score, first.cited) == (
        1,
        7,
        "paris.md",
        4,
        0.83,
        True,
    )
    assert second.text == "The Louvre is a museum.\nIt opened in 1793." and not second.cited
    prompt = model.calls[0][-1]["content"]
    assert "[1] (paris.md, p. 4) The Eiffel Tower was built in 1889." in prompt and "[2] (paris.md)" in prompt
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens == 6
    assert answer.timings.first_token_ms is not None and answer.timings.total_ms >= answer.timings.first_token_ms


@pytest.mark.parametrize(
    ("text", "cited"),
    [
        ("see [2] and [1]", [2, 1]),
        ("both [1, 2]", [1, 2]),
        ("[1][2][1]", [1, 2]),
        ("见【2】", [2]),
        ("[7] and [0]", []),
        ("no cites", []),
    ],
)
def test_citations_are_read_in_their_common_forms_and_bounded_by_the_quote_count(text, cited):
    assert extract_citations(text, 3) == cited


def test_nothing_found_returns_the_apps_reply_without_calling_the_model():
    model = ScriptedChatModel([])
    config = AnswerConfig(not_found_reply="Ask the front desk.")
    streamed, answer = run(answer_question("Where is my parcel?", model=model, retrieve=Searches([]), config=config))
    assert streamed == answer.text == "Ask the front desk."
    assert answer.not_found and answer.quotes == [] and model.calls == []
    assert answer.usage.total_tokens == 0


def test_nothing_found_without_a_configured_reply_answers_in_the_questions_language():
    model = ScriptedChatModel([])
    _, answer = run(answer_question("我的包裹在哪里？", model=model, retrieve=Searches([])))
    assert answer.text == "抱歉，知识库中没有找到相关内容。" and model.calls == []


def test_general_knowledge_apps_ask_the_model_even_when_nothing_is_found():
    model = ScriptedChatModel(["Probably in transit."])
    config = AnswerConfig(allow_general_knowledge=True)
    _, answer = run(answer_question("Where is my parcel?", model=model, retrieve=Searches([]), config=config))
    assert answer.text == "Probably in transit." and not answer.not_found and len(model.calls) == 1


def test_a_follow_up_is_rewritten_for_retrieval_but_the_model_answers_the_original_with_history():
    model = ScriptedChatModel(["When was the Eiffel Tower built?", "In 1889 [1]."])
    searches = Searches([TOWER])
    history = [
        {"role": "user", "content": "What is the Eiffel Tower?"},
        {"role": "assistant", "content": "A tower in Paris."},
    ]
    _, answer = run(answer_question("and when was it built?", model=model, retrieve=searches, history=history))
    assert searches.queries == ["When was the Eiffel Tower built?"] and answer.query == searches.queries[0]
    rewrite_prompt = model.calls[0][-1]["content"]
    assert "User: What is the Eiffel Tower?" in rewrite_prompt and rewrite_prompt.rstrip().endswith(
        "Standalone question:"
    )
    answer_prompt = model.calls[1]
    assert answer_prompt[0]["role"] == "system"  # the rules, a prefix shared by every question
    assert answer_prompt[-3:-1] == history and answer_prompt[-1]["content"].endswith("and when was it built?")
    assert answer.usage.prompt_tokens > model.count_prompt_tokens(answer_prompt)  # the rewrite is paid for too


def test_without_history_the_question_is_searched_as_asked_and_no_rewrite_is_made():
    model = ScriptedChatModel(["Yes [1]."])
    searches = Searches([TOWER])
    run(answer_question("Is the Eiffel Tower in Paris?", model=model, retrieve=searches))
    assert searches.queries == ["Is the Eiffel Tower in Paris?"] and len(model.calls) == 1


@pytest.mark.parametrize("reply", ["", "   ", "\n\n", "北京", "x" * 400])
def test_an_empty_or_unusable_rewrite_keeps_the_original_question(reply):
    history = [{"role": "user", "content": "Tell me about the tower."}, {"role": "assistant", "content": "It is tall."}]
    rewrite = rewrite_question("and its height?", history, ScriptedChatModel([reply]))
    assert rewrite.query == "and its height?" and not rewrite.rewritten


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Standalone question: How tall is the tower?", "How tall is the tower?"),
        ('"How tall is the tower?"\nThe tower is tall.', "How tall is the tower?"),
        ("完整问题：埃菲尔铁塔有多高？", "埃菲尔铁塔有多高？"),
    ],
)
def test_a_rewrite_is_cleaned_of_labels_quotes_and_extra_lines(reply, expected):
    question = "它有多高？" if "铁塔" in expected else "and its height?"
    assert clean_rewrite(reply, question) == expected


def test_a_generation_failure_reaches_the_caller_without_an_answer():
    model = ScriptedChatModel(["It was built in 1889 [1]."], fail_after=2)
    stream = answer_question("When was it built?", model=model, retrieve=Searches([TOWER]))
    items = []
    with pytest.raises(UpstreamError):
        for item in stream:
            items.append(item)
    assert len(items) == 2 and not any(isinstance(i, Answer) for i in items)


def test_an_uncited_answer_copied_from_a_quote_gets_its_number_added_by_kb():
    model = ScriptedChatModel(["The Louvre is a museum in Paris."])
    streamed, answer = run(answer_question("What is the Louvre?", model=model, retrieve=Searches([TOWER, LOUVRE])))
    assert streamed == answer.text == "The Louvre is a museum in Paris. [2]"
    assert answer.cited == [2] and answer.cited_by == "kb"


@pytest.mark.parametrize(
    "reply",
    ["I don't know.", "Paris has many museums and towers worth a visit.", "1889"],
)
def test_an_answer_not_copied_from_a_quote_gets_no_citation(reply):
    _, answer = run(
        answer_question("What is the Louvre?", model=ScriptedChatModel([reply]), retrieve=Searches([TOWER, LOUVRE]))
    )
    assert answer.text == reply and answer.cited == [] and answer.cited_by is None


def test_adding_citations_can_be_turned_off():
    config = AnswerConfig(cite_copied_quote=False)
    model = ScriptedChatModel(["The Louvre is a museum in Paris."])
    _, answer = run(answer_question("What is the Louvre?", model=model, retrieve=Searches([LOUVRE]), config=config))
    assert answer.cited == [] and answer.text == "The Louvre is a museum in Paris."


def test_copied_share_counts_word_and_chinese_character_trigrams():
    assert copied_share("It was built in 1889 by engineers.", "The Eiffel Tower was built in 1889.") == pytest.approx(
        2 / 5
    )
    assert copied_share("北京是中国的首都", "北京是中国的首都。") == 1.0
    assert copied_share("Yes it is", "Yes it is") == 0.0  # too short to tell
    # A number right before Chinese text is its own token: the characters after it still count one by one.
    assert copied_share("公园由泰国国家铁路局捐献土地", "1975年由泰国国家铁路局捐献土地建筑成公园。") == pytest.approx(
        10 / 12
    )
    assert (
        source_of_copy("the tower was built in 1889 [3]", ["nothing alike here at all", "The tower was built in 1889."])
        == 2
    )


def test_a_model_that_reads_few_sentences_is_shown_only_the_best_matching_ones_under_their_quotes_numbers():
    model = ScriptedChatModel(["The tower was built in 1889 for a world's fair."])
    config = AnswerConfig(quote_sentences=1)
    _, answer = run(
        answer_question(
            "When was the Eiffel Tower built?", model=model, retrieve=Searches([LOUVRE, LANDMARKS]), config=config
        )
    )
    [shown] = answer.quotes
    assert (shown.number, shown.chunk_id, shown.page, shown.text) == (
        1,
        7,
        4,
        "The tower was built in 1889 for a world's fair.",
    )
    assert "[1] (paris.md, p. 4) The tower was built in 1889 for a world's fair.\n\n" in model.calls[0][-1]["content"]
    assert answer.cited == [1] and answer.cited_by == "kb"


def test_the_best_ranked_quote_keeps_its_lead_sentences_and_the_others_share_the_rest():
    first = RetrievedQuote(
        chunk_id=5,
        collection_id=2,
        source="louvre.md",
        score=0.9,
        page=None,
        q="The Louvre is a museum. It opened in 1793. The tower is near. It has a pyramid.",
    )
    model = ScriptedChatModel(["It was built in 1889 [2]."])
    config = AnswerConfig(quote_sentences=1, lead_sentences=2)
    _, answer = run(
        answer_question("When was the tower built?", model=model, retrieve=Searches([first, LANDMARKS]), config=config)
    )
    assert [(q.chunk_id, q.text) for q in answer.quotes] == [
        (5, "The Louvre is a museum. The tower is near."),  # its two best (ties in order), not the best of all
        (7, "The tower was built in 1889 for a world's fair."),
    ]


class WholeAnswersOnly(ScriptedChatModel):
    """A model that may only be asked for whole answers (as when nobody reads the answer before it ends)."""

    def stream(self, messages, params, cancel=None):
        raise AssertionError("a whole answer was wanted; the model was asked to stream")

    def generate(self, messages, params, cancel=None):
        return final_completion(ScriptedChatModel.stream(self, messages, params, cancel))


def test_a_whole_answer_is_asked_of_the_model_at_once_and_still_cited_and_timed():
    model = WholeAnswersOnly(["It was built in 1889 [1]."])
    config = AnswerConfig(whole_answer=True)
    _, answer = run(
        answer_question("When was the Eiffel Tower built?", model=model, retrieve=Searches([TOWER]), config=config)
    )
    assert answer.text == "It was built in 1889 [1]." and answer.cited == [1]
    assert answer.timings.first_token_ms is not None and answer.timings.total_ms >= answer.timings.first_token_ms


class RecordsParams(ScriptedChatModel):
    def stream(self, messages, params, cancel=None):
        self.params = params
        return super().stream(messages, params, cancel)


@pytest.mark.parametrize("bias", [{}, {"zh": 2.0}, {"en": 1.5, "zh": 2.0}])
def test_a_copy_bias_favours_the_words_of_the_quotes_as_shown_in_the_questions_language(bias):
    model = RecordsParams(["It was built in 1889 [1]."])
    config = AnswerConfig(quote_sentences=1, copy_bias=bias)
    run(answer_question("When was the tower built?", model=model, retrieve=Searches([LANDMARKS]), config=config))
    expected = ("The tower was built in 1889 for a world's fair.", 1.5) if "en" in bias else ("", 0.0)
    assert (model.params.copy_from, model.params.copy_bias) == expected, "the focused text, not the chunk"
