"""Finding 16 of the hardening review: a long follow-up question hung the server.

With one earlier turn in the chat, a 41,300-character follow-up went to the chat model (the follow-up
rewrite) before any limit was checked. Every message a caller sends now meets one limit first.
"""

from __future__ import annotations

from fastapi.testclient import TestClient
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from kb.testing import ScriptedChatModel
from tests.helpers import ROOT
from tests.web.support import ANSWER, QUESTION

FOLLOW_UP = "and what about the fish in it? " * 1333  # about 41,300 characters


def _recording_model(app) -> list[list[dict]]:
    calls: list[list[dict]] = []

    def reply(messages: list[dict]) -> str:
        calls.append(messages)
        return ANSWER

    app.state.registry.register_chat(ScriptedChatModel(reply, name="scripted"))
    return calls


def _chat(client: TestClient, model: str, content: str, **extra) -> object:
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return client.post("/v1/chat/completions", json=body, headers=ROOT)


def test_a_long_follow_up_question_is_refused_before_any_model_work(app, lakes_app):
    calls = _recording_model(app)
    with TestClient(app) as client:
        assert _chat(client, "app:lakes", QUESTION, chatId="long-1").status_code == 200
        calls.clear()
        refused = _chat(client, "app:lakes", FOLLOW_UP, chatId="long-1", stream=True)
        unsearchable = _chat(client, "app:lakes", "q" * 3000, chatId="long-1", stream=True)
    assert refused.status_code == 400, refused.text
    assert f"is {len(FOLLOW_UP)} characters; the limit is 8000" in refused.json()["error"]["message"]
    assert unsearchable.status_code == 400, unsearchable.text
    assert unsearchable.json()["error"]["message"] == "the question is 3000 characters; the limit is 2000"
    assert calls == [], "the chat model never saw the follow-up"


def test_every_message_a_caller_sends_meets_one_limit_with_a_400_naming_it(app, lakes_app):
    calls = _recording_model(app)
    history = [{"role": "user", "content": "x" * 9000}, {"role": "assistant", "content": "ok"}]
    with TestClient(app) as client:
        long_plain = _chat(client, "scripted", "y" * 8001)
        long_history = client.post(
            "/v1/chat/completions",
            json={"model": "app:lakes", "messages": [*history, {"role": "user", "content": QUESTION}]},
            headers=ROOT,
        )
        too_many = client.post(
            "/v1/chat/completions",
            json={"model": "scripted", "messages": [{"role": "user", "content": "hi"}] * 201},
            headers=ROOT,
        )
    assert long_plain.status_code == 400
    assert (
        long_plain.json()["error"]["message"]
        == "messages[0] is 8001 characters; the limit is 8000 (KB_MAX_MESSAGE_CHARS)"
    )
    assert (
        long_history.status_code == 400 and "messages[0] is 9000 characters" in long_history.json()["error"]["message"]
    )
    assert too_many.status_code == 400 and "the limit is 200" in too_many.json()["error"]["message"]
    assert calls == []


def test_the_question_box_shows_the_limit(admin_client, lakes_app):
    page = HTMLParser(admin_client.get("/").text)
    box = page.css_first("textarea[name=question]")
    assert box.attributes["maxlength"] == "2000"
    assert "2000" in page.css_first(f"#{box.attributes['aria-describedby']}").text()
