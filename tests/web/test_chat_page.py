"""The chat page `/` over HTTP: login, streaming through the admin session, server-side rendering, history."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from kb.principal import Principal
from kb.services import apps as app_service
from kb.services import chats as chat_service
from kb.services.apps import AppUpdate, ChatSettings
from kb.testing import ScriptedChatModel
from tests.answer_data import make_app
from tests.helpers import ROOT, csrf_token_of
from tests.web.support import ANSWER, QUESTION, assert_inert, sse_payloads


def ask(client: TestClient, app_name: str, chat_id: str | None, question: str = QUESTION, **headers) -> list[dict]:
    body = {
        "model": f"app:{app_name}",
        "messages": [{"role": "user", "content": question}],
        "stream": True,
        "detail": True,
    }
    if chat_id:
        body["chatId"] = chat_id
    response = client.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return sse_payloads(response.text)


def test_the_chat_needs_the_admin_login(app):
    with TestClient(app) as client:
        response = client.get("/?app=1", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/admin/login?next=/%3Fapp%3D1"


def test_without_apps_the_chat_says_how_to_make_one(admin_client):
    page = admin_client.get("/")
    assert page.status_code == 200 and "No app yet" in page.text and 'href="/admin/apps/new"' in page.text


def test_the_chat_offers_the_apps_and_starts_a_new_conversation(admin_client, lakes_app, rt):
    make_app(rt, "other <img src=x onerror=alert(1)>", [])
    page = admin_client.get("/")
    tree = HTMLParser(page.text)
    assert page.headers["cache-control"] == "no-store"
    assert [o.text() for o in tree.css("#app-picker option")] == ["lakes", "other <img src=x onerror=alert(1)>"]
    assert_inert(page.text)
    chat = tree.css_first("section.chat")
    assert chat.attributes["data-model"] == "app:lakes" and chat.attributes["data-store"] == "true"
    assert re.fullmatch(r"[A-Za-z0-9_-]{16}", chat.attributes["data-chat-id"])
    assert tree.css("ol.messages li") == [] and "No conversation yet." in page.text
    assert tree.css_first('script[src="/static/chat.js"]') is not None


def test_the_session_streams_an_answer_with_quotes_and_the_turn_is_kept(admin_client, lakes_app):
    events = ask(admin_client, "lakes", "web-1")
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == ANSWER
    last = events[-1]
    assert last["chatId"] == "web-1" and last["responseMessageId"] > 0 and last["cited"] == [1]
    assert last["quotes"][0]["source"] == "lakes.md" and "<script>alert(1)</script>" in last["quotes"][0]["text"]
    listing = admin_client.get("/api/chats", params={"app_id": lakes_app.id}).json()
    assert [c["id"] for c in listing["data"]] == ["web-1"] and listing["data"][0]["title"] == QUESTION


def test_streaming_through_the_session_needs_the_csrf_header(admin_client, lakes_app):
    body = {"model": "app:lakes", "messages": [{"role": "user", "content": QUESTION}], "stream": True}
    refused = admin_client.post("/v1/chat/completions", json=body, headers={"X-CSRF-Token": ""})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"


def test_the_finished_answer_is_rendered_on_the_server_and_hostile_text_stays_text(admin_client, lakes_app):
    last = ask(admin_client, "lakes", "web-2")[-1]
    body = {
        "text": ANSWER,
        "quotes": last["quotes"],
        "chat_id": last["chatId"],
        "message_id": last["responseMessageId"],
    }
    response = admin_client.post("/chat/render", json=body)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert_inert(html)
    tree = HTMLParser(html)
    assert tree.css_first(".answer-body strong").text() == "largest"
    assert [b.attributes["data-quote"] for b in tree.css(".answer-body button.cite")] == ["1"]
    quote = tree.css_first('.quotes li[data-quote="1"]')
    assert quote.css_first(".quote-source").text() == "lakes.md" and quote.css_first(".quote-page").text() == "page 1"
    assert "<script>alert(1)</script>" in quote.css_first(".quote-text").text()  # shown as text, escaped in the markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    feedback = tree.css_first(".feedback")
    assert feedback.attributes["data-chat-id"] == "web-2" and feedback.attributes["data-message-id"] == str(
        last["responseMessageId"]
    )


def test_rendering_needs_the_login_and_the_csrf_token(app, admin_client):
    refused = admin_client.post("/chat/render", json={"text": "x"}, headers={"X-CSRF-Token": "wrong"})
    assert refused.status_code == 403
    with TestClient(app) as stranger:
        assert stranger.post("/chat/render", json={"text": "x"}, follow_redirects=False).status_code == 303


def test_rendering_refuses_a_malformed_request(admin_client):
    response = admin_client.post(
        "/chat/render", json={"text": "x", "quotes": [{"number": 0}]}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 400 and "quotes.0.number" in response.json()["error"]["message"]


def test_a_kept_conversation_reopens_rendered_with_its_quotes_and_feedback(admin_client, lakes_app, rt):
    last = ask(admin_client, "lakes", "web-3")[-1]
    chat_service.set_feedback(rt.db, Principal(kind="admin"), "web-3", last["responseMessageId"], "up", None)
    page = admin_client.get("/", params={"chat": "web-3"})
    assert page.status_code == 200
    assert_inert(page.text)
    tree = HTMLParser(page.text)
    assert tree.css_first("section.chat").attributes["data-chat-id"] == "web-3"
    assert [li.attributes["class"] for li in tree.css("ol.messages > li")] == ["message user", "message assistant"]
    assert tree.css_first(".message.user .bubble").text() == QUESTION
    assert tree.css_first(".message.assistant button.cite").attributes["data-quote"] == "1"
    assert tree.css_first('.feedback-button[data-rating="up"]').attributes["aria-pressed"] == "true"
    current = tree.css_first('.chat-history a[aria-current="page"]')
    assert current.text() == QUESTION and current.attributes["href"] == f"/?app={lakes_app.id}&chat=web-3"


def test_an_unknown_conversation_is_a_404_page(admin_client, lakes_app):
    page = admin_client.get("/", params={"chat": "nobody-had-this"})
    assert page.status_code == 404 and "There is no chat with id" in page.text


def test_feedback_goes_through_the_session_with_the_csrf_header(admin_client, lakes_app):
    last = ask(admin_client, "lakes", "web-4")[-1]
    url = f"/api/chats/web-4/messages/{last['responseMessageId']}/feedback"
    assert admin_client.post(url, json={"rating": "down"}, headers={"X-CSRF-Token": ""}).status_code == 403
    saved = admin_client.post(url, json={"rating": "down"})
    assert saved.status_code == 200 and saved.json()["feedback"] == "down"


def test_the_chat_page_carries_the_session_token_and_no_inline_code(admin_client, lakes_app):
    ask(admin_client, "lakes", "web-6")
    page = admin_client.get("/", params={"chat": "web-6"}).text
    assert csrf_token_of(page) == admin_client.headers["X-CSRF-Token"]
    tree = HTMLParser(page)
    assert [s.attributes.get("src") for s in tree.css("script")] == ["/static/kb.js", "/static/chat.js"]
    assert not [
        n.tag for n in tree.css("*") if any(a.lower().startswith("on") or a.lower() == "style" for a in n.attributes)
    ]


def test_an_app_key_cannot_read_chats_made_in_the_browser(admin_client, lakes_app, rt):
    ask(admin_client, "lakes", "web-5")
    other = make_app(rt, "other", [])
    key = admin_client.post("/api/keys", json={"name": "other only", "app_id": other.id}).json()["key"]
    assert admin_client.get("/api/chats/web-5", headers={"Authorization": f"Bearer {key}"}).status_code == 404
    assert admin_client.get("/api/chats/web-5", headers=ROOT).status_code == 200


def test_an_apps_answer_length_applies_unless_the_request_sets_its_own(admin_client, lakes_app, rt):
    rt.registry.register_chat(ScriptedChatModel(lambda messages: "word " * 60, name="talkative"))
    app_service.update_app(rt, lakes_app.id, AppUpdate(chat_model="talkative", chat=ChatSettings(max_tokens=20)))
    body = {"model": "app:lakes", "messages": [{"role": "user", "content": QUESTION}]}
    short = admin_client.post("/v1/chat/completions", json=body).json()
    assert (short["usage"]["completion_tokens"], short["choices"][0]["finish_reason"]) == (20, "length")
    longer = admin_client.post("/v1/chat/completions", json={**body, "max_tokens": 30}).json()
    assert longer["usage"]["completion_tokens"] == 30
