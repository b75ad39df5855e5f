"""API keys over REST, used through the OpenAI SDK: shown once, revoked, expired, over quota, scoped; usage logged."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import httpx
import openai
import pytest
from sqlalchemy import text

from kb.db.store import keys as key_store
from kb.ml.types import GenerationParams
from kb.security import hash_api_key
from kb.services.gateway import ChatJob
from kb.testing import EchoChatModel, HashEmbedder
from tests.helpers import ROOT
from tests.server.support import QUESTION, sdk


@pytest.fixture
def echo(app) -> EchoChatModel:
    model = EchoChatModel("echo")
    app.state.registry.register_chat(model)
    app.state.registry.register_embedder(HashEmbedder(name="hash"))
    return model


@pytest.fixture
def api(live_server, echo) -> httpx.Client:
    with httpx.Client(base_url=live_server.url, headers=ROOT) as client:
        yield client


def create_key(api: httpx.Client, **fields) -> dict:
    response = api.post("/api/keys", json={"name": "test", **fields})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_new_key_is_shown_once_works_and_is_refused_once_revoked(api, live_server, db):
    created = create_key(api, name="ci")
    assert created["key"].startswith(created["prefix"]) and created["scope"] == "all"
    listed = api.get("/api/keys").json()
    assert [k["name"] for k in listed] == ["ci"]
    assert (
        "key" not in listed[0] and created["key"] not in str(listed) and hash_api_key(created["key"]) not in str(listed)
    )
    with db.session() as session:
        assert session.scalar(text("SELECT key_hash FROM api_key")) == hash_api_key(created["key"])

    client = sdk(live_server.url, created["key"])
    assert client.chat.completions.create(model="echo", messages=QUESTION).choices[0].message.content

    revoked = api.delete(f"/api/keys/{created['id']}").json()
    assert revoked["revoked_at"] is not None
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="echo", messages=QUESTION)
    assert info.value.code == "key_revoked"


def test_an_expired_key_is_refused_with_401(api, live_server, db):
    created = create_key(api, expires_in_days=1)
    expected = datetime.now(UTC) + timedelta(days=1)
    assert abs(datetime.fromisoformat(created["expires_at"]) - expected) < timedelta(minutes=5)
    with db.session() as session:
        session.execute(text("UPDATE api_key SET expires_at = now() - interval '1 second'"))
        session.commit()
    with pytest.raises(openai.AuthenticationError) as info:
        sdk(live_server.url, created["key"]).models.list()
    assert info.value.code == "key_expired"


def test_expiry_in_the_past_or_given_twice_is_refused(api):
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    response = api.post("/api/keys", json={"name": "x", "expires_at": past})
    assert response.status_code == 400 and "in the past" in response.json()["error"]["message"]
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    response = api.post("/api/keys", json={"name": "x", "expires_at": future, "expires_in_days": 3})
    assert response.status_code == 400 and "not both" in response.json()["error"]["message"]


def test_a_key_over_its_token_quota_gets_429(api, live_server):
    created = create_key(api, token_quota=30)
    client = sdk(live_server.url, created["key"])
    first = client.chat.completions.create(model="echo", messages=QUESTION, max_tokens=10)
    with pytest.raises(openai.RateLimitError) as info:  # what is left cannot hold the prompt and 20 more tokens
        client.chat.completions.create(model="echo", messages=QUESTION, max_tokens=20)
    assert info.value.code == "insufficient_quota"
    (listed,) = api.get("/api/keys").json()
    assert listed["tokens_used"] == first.usage.total_tokens
    assert listed["request_count"] == 2 and listed["last_used_at"] is not None


def test_usage_is_aggregated_per_key_and_model(api, live_server):
    key = create_key(api)
    client = sdk(live_server.url, key["key"])
    answers = [client.chat.completions.create(model="echo", messages=QUESTION) for _ in range(2)]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-9", messages=QUESTION)
    embedded = client.embeddings.create(model="hash", input=["a text", "another text"])
    sdk(live_server.url).models.list()  # the root key's request, not this key's

    report = api.get("/api/usage", params={"key_id": key["id"]}).json()
    rows = {row["model"]: row for row in report["rows"]}
    assert set(rows) == {"echo", "gpt-9", "hash"}
    assert rows["echo"]["requests"] == 2 and rows["echo"]["errors"] == 0
    assert rows["echo"]["prompt_tokens"] == sum(a.usage.prompt_tokens for a in answers)
    assert rows["echo"]["completion_tokens"] == sum(a.usage.completion_tokens for a in answers)
    assert rows["echo"]["total_tokens"] == sum(a.usage.total_tokens for a in answers)
    assert rows["echo"]["p95_latency_ms"] >= rows["echo"]["mean_latency_ms"]  # p95 of two values lies near the larger
    assert rows["gpt-9"] | {"mean_latency_ms": 0, "p95_latency_ms": 0} == {
        "key_id": key["id"],
        "key_name": "test",
        "key_prefix": key["prefix"],
        "model": "gpt-9",
        "requests": 1,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "mean_latency_ms": 0,
        "p95_latency_ms": 0,
        "errors": 1,
    }
    assert rows["hash"]["prompt_tokens"] == embedded.usage.prompt_tokens > 0

    everyone = api.get("/api/usage").json()["rows"]
    assert any(row["key_id"] is None for row in everyone), "the root key's requests are reported too"
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert api.get("/api/usage", params={"since": later, "until": later}).status_code == 400
    earlier = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert api.get("/api/usage", params={"until": earlier}).json()["rows"] == []


def test_usage_reports_mean_and_95th_percentile_latency_and_errors(api, db):
    with db.session() as session:
        for latency in range(1, 101):
            key_store.record_usage(
                session,
                key_id=None,
                endpoint="/v1/chat/completions",
                model="echo",
                prompt_tokens=2,
                completion_tokens=1,
                latency_ms=latency,
                status=500 if latency % 10 == 0 else 200,
            )
        session.commit()
    (row,) = api.get("/api/usage").json()["rows"]
    assert row["requests"] == 100 and row["errors"] == 10
    assert row["prompt_tokens"] == 200 and row["total_tokens"] == 300
    assert row["mean_latency_ms"] == pytest.approx(50.5)
    assert row["p95_latency_ms"] == pytest.approx(95.05)


def test_key_routes_need_a_full_access_key(live_server):
    assert httpx.get(f"{live_server.url}/api/keys").status_code == 401
    assert httpx.post(f"{live_server.url}/api/keys", json={"name": "x"}).status_code == 401
    assert httpx.get(f"{live_server.url}/api/usage").status_code == 401


def test_revoking_an_unknown_key_is_a_404(api):
    response = api.delete("/api/keys/999")
    assert response.status_code == 404 and response.json()["error"]["code"] == "key_not_found"


def test_a_key_for_a_missing_app_is_refused(api):
    response = api.post("/api/keys", json={"name": "x", "app_id": 42})
    assert response.status_code == 400 and response.json()["error"]["code"] == "app_not_found"


@pytest.fixture
def helpdesk_id(db) -> int:
    with db.session() as session:
        session.execute(text("INSERT INTO app (name) VALUES ('wiki')"))
        app_id = session.scalar(text("INSERT INTO app (name) VALUES ('helpdesk') RETURNING id"))
        session.commit()
    return app_id


def test_an_app_key_sees_only_its_app_and_no_management_routes(api, live_server, helpdesk_id):
    created = create_key(api, app_id=helpdesk_id)
    assert created["scope"] == "app" and created["app_id"] == helpdesk_id
    client = sdk(live_server.url, created["key"])
    assert [m.id for m in client.models.list()] == ["app:helpdesk"]
    assert {"app:helpdesk", "app:wiki", "echo"} <= {m.id for m in sdk(live_server.url).models.list()}
    with pytest.raises(openai.PermissionDeniedError):
        client.embeddings.create(model="hash", input="x")
    denied = httpx.get(f"{live_server.url}/api/keys", headers={"Authorization": f"Bearer {created['key']}"})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "key_scope"


def test_app_chat_goes_through_the_app_seam(app, api, live_server, helpdesk_id, echo):
    created = create_key(api, app_id=helpdesk_id)
    app.state.app_chat = None  # a build without app answering
    with pytest.raises(openai.BadRequestError, match="answering from apps is not available"):
        sdk(live_server.url, created["key"]).chat.completions.create(model="anything", messages=QUESTION)

    seen = []

    def app_chat(state, principal, app_name, request):
        seen.append((principal.app_id, app_name, request.extra.get("chatId")))

        def produce(cancel: threading.Event):
            return echo.stream(request.messages, GenerationParams(temperature=0), cancel)

        return ChatJob(model=f"app:{app_name or 'helpdesk'}", produce=produce, extras={"quotes": ["q1"]})

    app.state.app_chat = app_chat
    scoped = sdk(live_server.url, created["key"]).chat.completions.create(
        model="anything", messages=QUESTION, extra_body={"chatId": "c1"}
    )
    assert scoped.model == "app:helpdesk" and scoped.choices[0].message.content == "Echo: What is pgvector?"
    assert scoped.model_extra["quotes"] == ["q1"]
    chunks = list(sdk(live_server.url).chat.completions.create(model="app:wiki", messages=QUESTION, stream=True))
    assert chunks[-1].model_extra["quotes"] == ["q1"] and chunks[-1].model == "app:wiki"
    assert seen == [(helpdesk_id, None, "c1"), (None, "wiki", None)]


@pytest.mark.parametrize("params", [{"until": "0001-01-02T00:00:00"}, {"until": "0001-01-01T00:00:00+01:00"}])
def test_a_usage_period_outside_the_calendar_is_a_400_not_a_500(api, params):
    response = api.get("/api/usage", params=params)
    assert response.status_code == 400 and "range of dates" in response.json()["error"]["message"]
