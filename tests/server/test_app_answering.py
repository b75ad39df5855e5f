"""Answering from an app over a real database: quotes and citations, not-found, chatId history, failures."""

from __future__ import annotations

import pytest

from kb.db.store import chats as chat_store
from kb.errors import BadRequest, NotFound, UpstreamError
from kb.ml.registry import get_registry
from kb.runtime import Runtime
from kb.services.answering import FinishedAnswer, app_question, ask_app
from kb.services.chats import history_for
from tests.answer_data import PARIS, TOKYO, add_knowledge, make_app, use_models


@pytest.fixture
def rt(settings, db) -> Runtime:
    return Runtime(settings, db, get_registry(settings))


def finish(stream) -> FinishedAnswer:
    *_, last = list(stream)
    assert isinstance(last, FinishedAnswer)
    return last


def ask(rt, app, text: str, chat_id: str | None = None, messages: list[dict] | None = None) -> FinishedAnswer:
    asked = app_question(rt, app, (messages or []) + [{"role": "user", "content": text}], chat_id)
    return finish(ask_app(rt, app, asked))


def test_the_answer_cites_quotes_found_in_the_apps_datasets(rt):
    models = use_models(rt, ["It was built from 1887 to 1889 [1]."])
    app = make_app(rt, "paris", [add_knowledge(rt, "paris", PARIS)], search={"mode": "hybrid", "limit": 2})
    answer = ask(rt, app, "When was the Eiffel Tower built?").answer
    assert answer.cited == [1] and len(answer.quotes) == 2
    top = answer.quotes[0]
    assert "1889" in top.text and top.source == "paris.md" and top.page == 1 and top.cited and top.score > 0
    assert top.text in models.chat.calls[0][-1]["content"]


def test_an_app_searches_only_its_own_datasets(rt):
    use_models(rt, ["Tokyo Tower [1]."])
    add_knowledge(rt, "paris", PARIS)
    app = make_app(rt, "tokyo", [add_knowledge(rt, "tokyo", TOKYO)])
    answer = ask(rt, app, "Which tower was built in 1889?").answer
    assert [q.source for q in answer.quotes] == ["tokyo.md"]


def test_nothing_above_the_threshold_gives_the_apps_reply_without_calling_the_model(rt):
    models = use_models(rt, [])
    app = make_app(
        rt,
        "strict",
        [add_knowledge(rt, "paris", PARIS)],
        search={"mode": "vector", "min_score": 0.99},
        not_found_reply="Not in our documents.",
    )
    finished = ask(rt, app, "How do volcanoes form?", chat_id="c-none")
    assert finished.answer.text == "Not in our documents." and finished.answer.not_found
    assert models.chat.calls == []
    assert history_for(rt.db, "c-none", app.id)[-1]["content"] == "Not in our documents."


def test_with_a_chat_id_history_comes_from_the_stored_chat_and_only_the_last_message_is_new(rt):
    models = use_models(rt, ["The Eiffel Tower is in Paris [1].", "When was the Eiffel Tower built?", "1889 [1]."])
    app = make_app(rt, "paris", [add_knowledge(rt, "paris", PARIS)])
    first = ask(rt, app, "Where is the Eiffel Tower?", chat_id="c-7")
    ignored = [{"role": "user", "content": "IGNORED earlier message"}, {"role": "assistant", "content": "IGNORED"}]
    second = ask(rt, app, "And when was it built?", chat_id="c-7", messages=ignored)
    rewrite_prompt, answer_prompt = models.chat.calls[1], models.chat.calls[2]
    assert "Where is the Eiffel Tower?" in rewrite_prompt[-1]["content"]
    assert answer_prompt[0]["role"] == "system"  # the app's rules (and a worked example); then the stored history
    assert answer_prompt[-3:-1] == [
        {"role": "user", "content": "Where is the Eiffel Tower?"},
        {"role": "assistant", "content": "The Eiffel Tower is in Paris [1]."},
    ]
    assert not any("IGNORED" in m["content"] for call in models.chat.calls for m in call)
    assert second.answer.query == "When was the Eiffel Tower built?"
    assert (first.turn.chat_id, second.turn.chat_id) == ("c-7", "c-7")
    with rt.db.session() as session:
        stored = chat_store.list_messages(session, "c-7")
    assert [m.role for m in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[3].content == "1889 [1]." and stored[3].quotes[0]["cited"] and stored[3].usage["total_tokens"] > 0
    assert stored[3].timings["query"] == "When was the Eiffel Tower built?" and "retrieval_ms" in stored[3].timings


def test_without_a_chat_id_the_requests_own_messages_are_the_history_and_nothing_is_stored(rt):
    models = use_models(rt, ["When was the Eiffel Tower built?", "1889 [1]."])
    app = make_app(rt, "paris", [add_knowledge(rt, "paris", PARIS)])
    earlier = [
        {"role": "system", "content": "client system text"},
        {"role": "user", "content": "Tell me about the Eiffel Tower."},
        {"role": "assistant", "content": "It is in Paris."},
    ]
    finished = ask(rt, app, "When was it built?", messages=earlier)
    system, history = models.chat.calls[1][0], models.chat.calls[1][-3:-1]
    assert "client system text" not in system["content"]  # the app's system message, not the client's
    assert finished.turn is None and history == earlier[1:]
    with rt.db.session() as session:
        assert chat_store.list_chats(session)[1] == 0


def test_a_failed_generation_stores_nothing(rt):
    models = use_models(rt, ["It was built in 1889 [1]."])
    models.chat.fail_after = 2
    app = make_app(rt, "paris", [add_knowledge(rt, "paris", PARIS)])
    asked = app_question(rt, app, [{"role": "user", "content": "When was it built?"}], "c-fail")
    with pytest.raises(UpstreamError):
        list(ask_app(rt, app, asked))
    with rt.db.session() as session:
        assert chat_store.get_chat(session, "c-fail") is None


def test_a_chat_id_of_another_app_is_refused_as_not_found(rt):
    use_models(rt, ["Paris [1]."])
    dataset = add_knowledge(rt, "paris", PARIS)
    first, second = make_app(rt, "first", [dataset]), make_app(rt, "second", [dataset])
    ask(rt, first, "Where is the Louvre?", chat_id="shared")
    with pytest.raises(NotFound, match="There is no chat with id 'shared'"):
        app_question(rt, second, [{"role": "user", "content": "Hi?"}], "shared")


def test_the_last_message_must_be_the_users_question(rt):
    app = make_app(rt, "paris", [])
    with pytest.raises(BadRequest, match="last message must be a non-empty user message"):
        app_question(rt, app, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], None)
