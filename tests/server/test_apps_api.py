"""`/api/apps` CRUD with validation, `/api/chats` with feedback, and what an app-scoped key may not do."""

from __future__ import annotations

from kb.db.store import datasets as dataset_store
from kb.db.store import keys as key_store
from kb.rag.answer import Answer, AnswerQuote, Timings, Usage
from kb.security import display_prefix, generate_api_key, hash_api_key
from kb.services.chats import save_turn
from tests.helpers import ROOT


def make_dataset(db, name: str) -> int:
    with db.session() as session:
        record = dataset_store.add_dataset(
            session, name=name, embed_model="minilm", embed_dim=384, embed_variant="onnx-int8"
        )
        session.commit()
    return record.id


def app_key(db, app_id: int) -> dict[str, str]:
    key = generate_api_key()
    with db.session() as session:
        key_store.add_key(
            session, name="app key", prefix=display_prefix(key), key_hash=hash_api_key(key), app_id=app_id
        )
        session.commit()
    return {"Authorization": f"Bearer {key}"}


def create(client, **fields) -> dict:
    response = client.post("/api/apps", json={"name": "helpdesk", **fields}, headers=ROOT)
    assert response.status_code == 201, response.text
    return response.json()


def finished_answer(text: str) -> Answer:
    quote = AnswerQuote(1, 5, 1, 1, "guide.md", 2, 0.7, "Reset it from the settings page.", True)
    return Answer(
        text, [quote], "how to reset?", "en", False, "stop", "echo", Usage(30, 8), Timings(0, 12.5, 40.0, 90.0)
    )


def test_an_app_is_created_with_defaults_and_read_back(client, db):
    manual = make_dataset(db, "manual")
    app = create(client, dataset_ids=[manual], system_prompt="Be brief.", search={"limit": 3, "mode": "vector"})
    assert app["dataset_ids"] == [manual] and app["system_prompt"] == "Be brief."
    assert app["search"] == {"mode": "vector", "limit": 3, "min_score": 0.0, "max_tokens": 1200, "rerank": False}
    assert app["chat_model"] is None and app["allow_general_knowledge"] is False
    assert client.get(f"/api/apps/{app['id']}", headers=ROOT).json() == app
    assert [a["name"] for a in client.get("/api/apps", headers=ROOT).json()["data"]] == ["helpdesk"]


def test_an_app_is_updated_field_by_field_and_its_datasets_replaced(client, db):
    first, second = make_dataset(db, "first"), make_dataset(db, "second")
    app = create(client, dataset_ids=[first])
    response = client.patch(
        f"/api/apps/{app['id']}",
        json={"dataset_ids": [second, first], "not_found_reply": "Ask a human.", "chat_model": "smollm2"},
        headers=ROOT,
    )
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["dataset_ids"] == sorted([first, second]) and changed["not_found_reply"] == "Ask a human."
    assert changed["chat_model"] == "smollm2" and changed["name"] == "helpdesk"


def test_unknown_datasets_and_chat_models_are_refused_with_names(client, db):
    response = client.post("/api/apps", json={"name": "a", "dataset_ids": [999]}, headers=ROOT)
    assert response.status_code == 400 and "999" in response.json()["error"]["message"]
    response = client.post("/api/apps", json={"name": "a", "chat_model": "gpt-9"}, headers=ROOT)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "model_not_found" and "smollm2" in response.json()["error"]["message"]


def test_bad_search_settings_and_names_are_refused(client):
    assert client.post("/api/apps", json={"name": "a", "search": {"mode": "magic"}}, headers=ROOT).status_code == 400
    assert client.post("/api/apps", json={"name": "a", "search": {"limit": 0}}, headers=ROOT).status_code == 400
    assert client.post("/api/apps", json={"name": "app:x"}, headers=ROOT).status_code == 400


def test_a_second_app_with_the_same_name_is_a_conflict(client):
    create(client)
    response = client.post("/api/apps", json={"name": "helpdesk"}, headers=ROOT)
    assert response.status_code == 409 and "helpdesk" in response.json()["error"]["message"]
    other = client.post("/api/apps", json={"name": "other"}, headers=ROOT).json()
    assert client.patch(f"/api/apps/{other['id']}", json={"name": "helpdesk"}, headers=ROOT).status_code == 409


def test_deleting_an_app_removes_it(client):
    app = create(client)
    assert client.delete(f"/api/apps/{app['id']}", headers=ROOT).status_code == 204
    assert client.get(f"/api/apps/{app['id']}", headers=ROOT).status_code == 404
    assert client.delete(f"/api/apps/{app['id']}", headers=ROOT).status_code == 404


def test_an_app_key_cannot_manage_apps_or_read_datasets(client, db):
    app = create(client)
    headers = app_key(db, app["id"])
    assert client.get("/api/apps", headers=headers).status_code == 403
    assert client.get(f"/api/apps/{app['id']}", headers=headers).status_code == 403
    assert client.post("/api/apps", json={"name": "mine"}, headers=headers).status_code == 403
    assert client.get("/api/apps", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_chats_are_listed_read_renamed_and_deleted(client, db):
    app = create(client)
    turn = save_turn(
        db,
        chat_id="c-1",
        app_id=app["id"],
        api_key_id=None,
        source="api",
        question="How do I reset it?",
        answer=finished_answer("From settings [1]."),
    )
    listing = client.get("/api/chats", params={"app_id": app["id"]}, headers=ROOT).json()
    assert (
        listing["total"] == 1
        and listing["data"][0]["title"] == "How do I reset it?"
        and listing["data"][0]["message_count"] == 2
    )
    chat = client.get("/api/chats/c-1", headers=ROOT).json()
    question, answer = chat["messages"]
    assert (question["role"], question["content"]) == ("user", "How do I reset it?")
    assert answer["id"] == turn.assistant_message_id and answer["quotes"][0]["source"] == "guide.md"
    assert answer["usage"]["total_tokens"] == 38 and answer["timings"]["retrieval_ms"] == 12.5
    assert client.patch("/api/chats/c-1", json={"title": "Resetting"}, headers=ROOT).json()["title"] == "Resetting"
    assert client.delete("/api/chats/c-1", headers=ROOT).status_code == 204
    assert client.get("/api/chats/c-1", headers=ROOT).status_code == 404


def test_feedback_is_stored_on_answers_only(client, db):
    app = create(client)
    turn = save_turn(
        db, chat_id="c-2", app_id=app["id"], api_key_id=None, source="api", question="Q?", answer=finished_answer("A.")
    )
    url = f"/api/chats/c-2/messages/{turn.assistant_message_id}/feedback"
    response = client.post(url, json={"rating": "down", "comment": " wrong page "}, headers=ROOT)
    assert response.status_code == 200 and response.json()["feedback"] == "down"
    stored = client.get("/api/chats/c-2", headers=ROOT).json()["messages"][1]
    assert (stored["feedback"], stored["feedback_comment"]) == ("down", "wrong page")
    assert client.post(url, json={"rating": "sideways"}, headers=ROOT).status_code == 400
    asked = f"/api/chats/c-2/messages/{turn.user_message_id}/feedback"
    assert client.post(asked, json={"rating": "up"}, headers=ROOT).status_code == 400
    assert client.post("/api/chats/c-2/messages/99999/feedback", json={"rating": "up"}, headers=ROOT).status_code == 404


def test_an_app_key_sees_only_its_own_apps_chats(client, db):
    mine, theirs = create(client, name="mine"), create(client, name="theirs")
    save_turn(
        db, chat_id="own", app_id=mine["id"], api_key_id=None, source="api", question="Q1", answer=finished_answer("A1")
    )
    turn = save_turn(
        db,
        chat_id="foreign",
        app_id=theirs["id"],
        api_key_id=None,
        source="api",
        question="Q2",
        answer=finished_answer("A2"),
    )
    headers = app_key(db, mine["id"])
    assert [c["id"] for c in client.get("/api/chats", headers=headers).json()["data"]] == ["own"]
    assert client.get("/api/chats", params={"app_id": theirs["id"]}, headers=headers).status_code == 403
    assert client.get("/api/chats/foreign", headers=headers).status_code == 404
    assert client.patch("/api/chats/foreign", json={"title": "x"}, headers=headers).status_code == 404
    assert client.delete("/api/chats/foreign", headers=headers).status_code == 404
    feedback = f"/api/chats/foreign/messages/{turn.assistant_message_id}/feedback"
    assert client.post(feedback, json={"rating": "up"}, headers=headers).status_code == 404
    assert client.get("/api/chats/own", headers=headers).status_code == 200
    assert len(client.get("/api/chats", headers=ROOT).json()["data"]) == 2
