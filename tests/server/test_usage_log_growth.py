"""Finding 11 of the hardening review: requests without credentials grew the database.

Every `/v1` request, a 401 included, wrote a usage_log row, and rows were never deleted.
"""

from __future__ import annotations

from sqlalchemy import text

from kb.runtime import Runtime
from kb.services import housekeeping
from tests.helpers import ROOT

CHAT = {"model": "nope", "messages": [{"role": "user", "content": "hi"}]}


def _rows(db) -> int:
    with db.session() as session:
        return session.scalar(text("SELECT count(*) FROM usage_log"))


def test_requests_without_credentials_write_no_usage_rows(client, db):
    for headers in ({}, {"Authorization": "Bearer not-a-key"}):
        for _ in range(5):
            assert client.post("/v1/chat/completions", json=CHAT, headers=headers).status_code == 401
    assert _rows(db) == 0
    assert client.get("/v1/models", headers=ROOT).status_code == 200
    assert _rows(db) == 1, "authenticated requests are still logged"


def test_usage_rows_past_the_retention_are_pruned(settings, db, app):
    with db.session() as session:
        session.execute(
            text(
                "INSERT INTO usage_log (endpoint, status, created_at) VALUES "
                "('/v1/old', 200, now() - interval '100 days'), ('/v1/recent', 200, now() - interval '1 day')"
            )
        )
        session.commit()
    housekeeping.prune(Runtime(settings.model_copy(update={"usage_retention_days": 90}), db, app.state.registry))
    with db.session() as session:
        assert session.scalars(text("SELECT endpoint FROM usage_log")).all() == ["/v1/recent"]
