"""Secrets are stored hashed and never written to logs."""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy import text

from kb.security import verify_password
from kb.testing import EchoChatModel
from tests.helpers import ADMIN_PASSWORD, ROOT, ROOT_KEY, csrf_token_of


def _database_text(db) -> str:
    """Every key and setting row as text, to search for a secret in clear."""
    with db.session() as session:
        keys = session.execute(text("SELECT row_to_json(k)::text FROM api_key k")).scalars().all()
        settings = session.execute(text("SELECT row_to_json(s)::text FROM setting s")).scalars().all()
    return "\n".join([*keys, *settings])


def test_api_keys_and_the_admin_password_are_stored_only_as_hashes(client, db):
    key = client.post("/api/keys", json={"name": "stored"}, headers=ROOT).json()["key"]
    with db.session() as session:
        key_hash = session.execute(text("SELECT key_hash FROM api_key")).scalar_one()
        password = session.execute(text("SELECT value FROM setting WHERE value ? 'hash'")).scalar_one()
    assert key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert password["hash"].startswith("$argon2") and verify_password(password["hash"], ADMIN_PASSWORD)
    stored = _database_text(db)
    assert key not in stored and ADMIN_PASSWORD not in stored and ROOT_KEY not in stored


def test_no_secret_reaches_the_logs_during_logins_and_keyed_requests(client, app, caplog):
    app.state.registry.register_chat(EchoChatModel("echo"))
    with caplog.at_level(logging.DEBUG):
        key = client.post("/api/keys", json={"name": "logged"}, headers=ROOT).json()["key"]
        for headers in (ROOT, {"Authorization": f"Bearer {key}"}):
            client.get("/api/datasets", headers=headers)
            client.post(
                "/v1/chat/completions",
                headers=headers,
                json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
            )
        client.get("/api/datasets", headers={"Authorization": f"Bearer {key}x"})
        for password in ("wrong-password-123", ADMIN_PASSWORD):
            token = csrf_token_of(client.get("/admin/login").text)
            client.post("/admin/login", data={"password": password, "csrf_token": token}, follow_redirects=False)
    logged = caplog.text + "".join(str(record.args) for record in caplog.records)
    assert caplog.records, "nothing was logged, so the test proves nothing"
    for secret in (ROOT_KEY, key, ADMIN_PASSWORD, "wrong-password-123"):
        assert secret not in logged
