"""App chat on /v1/chat/completions through the official openai SDK, and what an app-scoped key may reach."""

from __future__ import annotations

import httpx
import openai
import pytest

from kb.runtime import Runtime
from tests.answer_data import PARIS, TOKYO, add_knowledge, make_app, use_models
from tests.helpers import ROOT, ROOT_KEY
from tests.server.support import sdk

QUESTION = [{"role": "user", "content": "When was the Eiffel Tower built?"}]


@pytest.fixture
def rt(app, settings, db) -> Runtime:
    return Runtime(settings, db, app.state.registry)


@pytest.fixture
def client_for(live_server):
    """Official openai clients against the live server, closed after the test."""
    opened = []

    def make(key: str = ROOT_KEY) -> openai.OpenAI:
        opened.append(sdk(live_server.url, key))
        return opened[-1]

    yield make
    for client in opened:
        client.close()


@pytest.fixture
def paris(rt):
    models = use_models(rt, lambda messages: "It was built from 1887 to 1889 [1].")
    app = make_app(rt, "paris", [add_knowledge(rt, "paris", PARIS)], search={"limit": 2})
    return app, models


def test_streaming_with_detail_ends_with_the_quotes_before_done(live_server, paris, client_for):
    app, _ = paris
    client = client_for(app_key_for(live_server, app))
    chunks = list(
        client.chat.completions.create(
            model="anything", messages=QUESTION, stream=True, extra_body={"detail": True, "chatId": "sdk-1"}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "It was built from 1887 to 1889 [1]."
    last = chunks[-1].model_extra
    assert chunks[-1].model == "app:paris" and chunks[-1].choices[0].finish_reason == "stop"
    assert [q["number"] for q in last["quotes"]] == [1, 2] and last["cited"] == [1] and last["cited_by"] == "model"
    first = last["quotes"][0]
    assert "1889" in first["text"] and first["source"] == "paris.md" and first["cited"] and first["id"] > 0
    assert {"retrieval_ms", "first_token_ms", "total_ms"} <= set(last["timings"]) and last["chatId"] == "sdk-1"
    assert not any("quotes" in (c.model_extra or {}) for c in chunks[:-1])


def test_a_plain_answer_carries_quotes_only_when_detail_is_asked(live_server, paris, client_for):
    app, _ = paris
    client = client_for()
    plain = client.chat.completions.create(model="app:paris", messages=QUESTION)
    assert plain.choices[0].message.content.endswith("[1].") and "quotes" not in plain.model_extra
    detailed = client.chat.completions.create(model="app:paris", messages=QUESTION, extra_body={"detail": True})
    assert detailed.model_extra["quotes"][0]["cited"] and detailed.model_extra["timings"]["total_ms"] > 0
    assert detailed.usage.total_tokens > 0


def test_chat_id_keeps_the_conversation_on_the_server(live_server, paris, client_for):
    app, models = paris
    client = client_for(app_key_for(live_server, app))
    client.chat.completions.create(model="x", messages=QUESTION, extra_body={"chatId": "kept"})
    client.chat.completions.create(
        model="x", messages=[{"role": "user", "content": "Who designed it?"}], extra_body={"chatId": "kept"}
    )
    assert models.chat.calls[-1][-3]["content"] == "When was the Eiffel Tower built?"  # the stored turn, then this one
    chat = httpx.get(f"{live_server.url}/api/chats/kept", headers=ROOT).json()
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant", "user", "assistant"]


def test_an_app_key_reaches_only_its_own_app(live_server, rt, paris, client_for):
    app, _ = paris
    tokyo = make_app(rt, "tokyo", [add_knowledge(rt, "tokyo", TOKYO)])
    key = app_key_for(live_server, app)
    client = client_for(key)
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="app:tokyo", messages=QUESTION)
    with pytest.raises(openai.PermissionDeniedError):
        client.embeddings.create(model="hash", input="x")
    assert [m.id for m in client.models.list().data] == ["app:paris"]
    headers = {"Authorization": f"Bearer {key}"}
    for path in (
        "/api/datasets",
        f"/api/datasets/{tokyo.dataset_ids[0]}",
        "/api/apps",
        f"/api/apps/{tokyo.id}",
        "/api/keys",
    ):
        assert httpx.get(f"{live_server.url}{path}", headers=headers).status_code == 403, path
    assert httpx.get(f"{live_server.url}/api/chats", params={"app_id": tokyo.id}, headers=headers).status_code == 403
    with pytest.raises(openai.AuthenticationError):
        client_for("kb-not-a-key").chat.completions.create(model="app:paris", messages=QUESTION)


def test_an_unknown_app_is_a_clear_404(live_server, paris, client_for):
    with pytest.raises(openai.NotFoundError, match="There is no app named 'nope'"):
        client_for().chat.completions.create(model="app:nope", messages=QUESTION)


def app_key_for(live_server, app) -> str:
    response = httpx.post(f"{live_server.url}/api/keys", json={"name": "app", "app_id": app.id}, headers=ROOT)
    assert response.status_code == 201, response.text
    return response.json()["key"]
