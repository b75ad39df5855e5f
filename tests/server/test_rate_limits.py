"""Rate limits: chat per key and per address, login per address; 429 with Retry-After."""

from __future__ import annotations

from fastapi.testclient import TestClient

from kb.db.store.rate_limits import take_token
from kb.http.app import create_app
from kb.testing import EchoChatModel
from tests.helpers import ROOT, csrf_token_of

CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}


def test_a_bucket_allows_a_burst_then_says_how_long_to_wait(db):
    waits = [take_token(db, "test:a", 3, 3 / 60) for _ in range(4)]
    assert waits[:3] == [0, 0, 0]
    assert 19 < waits[3] <= 20  # 3 per minute: one token every 20 s
    assert take_token(db, "test:b", 3, 3 / 60) == 0, "callers have their own buckets"


def _client(settings, db, **limits) -> TestClient:
    app = create_app(settings.model_copy(update=limits), db=db)
    app.state.registry.register_chat(EchoChatModel("echo"))
    return TestClient(app)


def _new_key(client: TestClient) -> dict[str, str]:
    response = client.post("/api/keys", json={"name": "limited"}, headers=ROOT)
    return {"Authorization": f"Bearer {response.json()['key']}"}


def test_chat_is_limited_per_key_with_429_and_retry_after(settings, db):
    with _client(settings, db, rate_limit_chat_per_minute=2, rate_limit_chat_per_ip_per_minute=0) as client:
        first_key, second_key = _new_key(client), _new_key(client)
        assert [client.post("/v1/chat/completions", json=CHAT, headers=first_key).status_code for _ in range(2)] == [
            200,
            200,
        ]
        refused = client.post("/v1/chat/completions", json=CHAT, headers=first_key)
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert 1 <= int(refused.headers["retry-after"]) <= 30
        assert client.post("/v1/chat/completions", json=CHAT, headers=second_key).status_code == 200
        assert client.get("/api/datasets", headers=first_key).status_code == 200, "only chat is limited"


def test_chat_is_limited_per_address_whatever_the_key(settings, db):
    with _client(settings, db, rate_limit_chat_per_minute=100, rate_limit_chat_per_ip_per_minute=3) as client:
        keys = [_new_key(client) for _ in range(4)]
        codes = [client.post("/v1/chat/completions", json=CHAT, headers=key).status_code for key in keys]
    assert codes == [200, 200, 200, 429]


def test_a_refused_chat_request_is_not_run_and_costs_no_tokens(settings, db):
    with _client(settings, db, rate_limit_chat_per_minute=1) as client:
        assert client.post("/v1/chat/completions", json=CHAT, headers=ROOT).status_code == 200
        refused = client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=ROOT)
        assert refused.status_code == 429 and refused.headers["content-type"].startswith("application/json")


def _login(client: TestClient, password: str):
    token = csrf_token_of(client.get("/admin/login").text)
    return client.post("/admin/login", data={"password": password, "csrf_token": token}, follow_redirects=False)


def test_login_attempts_are_limited_per_address_even_when_they_succeed(settings, db):
    with _client(settings, db, rate_limit_login_per_minute=2) as client:
        assert _login(client, settings.admin_password.get_secret_value()).status_code == 303
        client.cookies.clear()
        assert _login(client, settings.admin_password.get_secret_value()).status_code == 303
        client.cookies.clear()
        refused = _login(client, settings.admin_password.get_secret_value())
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "Too many login attempts" in refused.text
    assert "kb_session" not in refused.headers.get("set-cookie", "")
