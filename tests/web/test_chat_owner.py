"""Finding 6 of the hardening review: one app's turn could land in another app's chat.

The owner of a chatId was checked before generation, and the turn was written afterwards with
`ensure_chat … ON CONFLICT DO NOTHING` and no second look; another app's chat was also a 403, which
told a caller that the chatId existed elsewhere.
"""

from __future__ import annotations

from fastapi.testclient import TestClient

from kb.db.store import chats as chat_store
from kb.testing import ScriptedChatModel
from tests.answer_data import make_app
from tests.helpers import ROOT
from tests.web.support import ANSWER, QUESTION


def _ask(client: TestClient, app_name: str, chat_id: str):
    body = {"model": f"app:{app_name}", "messages": [{"role": "user", "content": QUESTION}], "chatId": chat_id}
    return client.post("/v1/chat/completions", json=body, headers=ROOT)


def _messages(rt, chat_id: str) -> list:
    with rt.db.session() as session:
        return chat_store.list_messages(session, chat_id)


def test_a_turn_never_lands_in_a_chat_another_app_took_during_the_answer(app, rt, lakes_app):
    other = make_app(rt, "other", lakes_app.dataset_ids)

    def reply(messages: list[dict]) -> str:
        # While this answer is written, the other app starts a chat with the same chatId.
        with rt.db.session() as session:
            chat_store.ensure_chat(session, "race-1", app_id=other.id, api_key_id=None, title="other's", source="api")
            session.commit()
        return ANSWER

    app.state.registry.register_chat(ScriptedChatModel(reply, name="scripted"))
    with TestClient(app) as client:
        response = _ask(client, "lakes", "race-1")
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "chat_not_found"
    with rt.db.session() as session:
        assert chat_store.get_chat(session, "race-1").app_id == other.id
    assert _messages(rt, "race-1") == [], "nothing was written into the other app's chat"


def test_another_apps_chat_id_is_a_404_not_a_403(client, rt, lakes_app):
    make_app(rt, "other", lakes_app.dataset_ids)
    assert _ask(client, "other", "theirs").status_code == 200
    response = _ask(client, "lakes", "theirs")
    assert response.status_code == 404 and response.json()["error"]["code"] == "chat_not_found"
    assert len(_messages(rt, "theirs")) == 2
