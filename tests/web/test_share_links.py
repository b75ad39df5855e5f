"""Share links over HTTP: a visitor without login chats with one app and sees only their own chats; bad links
get a plain page; the link counts its use; embedding is limited to the listed origins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from kb.services import share_links as share_service
from kb.services.share_links import ShareLinkCreate
from tests.helpers import ROOT, csrf_token_of
from tests.web.support import ANSWER, QUESTION, sse_payloads


def open_page(client: TestClient, url: str) -> tuple[str, dict]:
    """The page's HTML and the headers its chat.js would send (visitor token, CSRF token)."""
    page = client.get(url)
    assert page.status_code == 200, page.text
    visitor = HTMLParser(page.text).css_first('meta[name="kb-visitor"]').attributes["content"]
    return page.text, {"X-KB-Visitor": visitor, "X-CSRF-Token": csrf_token_of(page.text)}


def visitor_ask(client: TestClient, token: str, headers: dict, chat_id: str, question: str = QUESTION) -> list[dict]:
    body = {"model": "x", "messages": [{"role": "user", "content": question}], "stream": True, "chatId": chat_id}
    response = client.post(f"/api/share/{token}/chat", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return sse_payloads(response.text)


def test_a_visitor_chats_without_login_and_the_link_counts_it(app, lakes_app, rt):
    created = TestClient(app).post(f"/api/apps/{lakes_app.id}/share-links", json={"name": "site"}, headers=ROOT)
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert len(token) >= 32
    with TestClient(app) as client:
        html, headers = open_page(client, f"/s/{token}")
        assert "lakes" in html and "/admin" not in html
        events = visitor_ask(client, token, headers, "visitor-chat-1")
        assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events) == ANSWER
        assert events[-1]["quotes"][0]["source"] == "lakes.md"
        mine = client.get(f"/api/share/{token}/chats", headers=headers).json()
        assert [chat["id"] for chat in mine["data"]] == ["visitor-chat-1"]
        export = client.get(f"/api/share/{token}/chats/visitor-chat-1/export", headers=headers)
        assert export.text.startswith(f"# {QUESTION}") and ANSWER in export.text
    [link] = share_service.list_links(rt, lakes_app.id)
    assert link.use_count == 1 and link.tokens_used > 0
    # The admin sees the visitor's chat, marked as coming through the link.
    listed = TestClient(app).get(f"/api/chats?app_id={lakes_app.id}", headers=ROOT).json()["data"]
    assert [(chat["id"], chat["source"]) for chat in listed] == [("visitor-chat-1", "share")]


def test_a_visitor_cannot_read_or_continue_another_visitors_chat(app, lakes_app, rt):
    token = share_service.create_link(rt, lakes_app.id, ShareLinkCreate()).token
    with TestClient(app) as first, TestClient(app) as second:
        _, first_headers = open_page(first, f"/s/{token}")
        _, second_headers = open_page(second, f"/s/{token}")
        visitor_ask(first, token, first_headers, "first-visitors-chat")
        assert second.get(f"/api/share/{token}/chats", headers=second_headers).json()["data"] == []
        for method, path in (("GET", ""), ("GET", "/export"), ("DELETE", ""), ("PATCH", "")):
            response = second.request(
                method,
                f"/api/share/{token}/chats/first-visitors-chat{path}",
                headers=second_headers,
                json={"title": "x"},
            )
            assert response.status_code == 404, (method, path, response.text)
        body = {"model": "x", "messages": [{"role": "user", "content": "hi"}], "chatId": "first-visitors-chat"}
        assert second.post(f"/api/share/{token}/chat", json=body, headers=second_headers).status_code == 404
        # A visitor token is bound to its link, and a forged one is refused.
        other = share_service.create_link(rt, lakes_app.id, ShareLinkCreate()).token
        assert first.get(f"/api/share/{other}/chats", headers=first_headers).status_code == 401
        token_text = first_headers["X-KB-Visitor"]
        cut = (
            token_text.rindex(".") + 1
        )  # the signature's first character carries a full 6 bits: changing it changes it
        forged_text = token_text[:cut] + ("A" if token_text[cut] != "A" else "B") + token_text[cut + 1 :]
        forged = {**first_headers, "X-KB-Visitor": forged_text}
        assert first.get(f"/api/share/{token}/chats", headers=forged).status_code == 401


def test_revoked_expired_and_unknown_links_show_a_plain_page_not_the_login(app, lakes_app, rt):
    revoked = share_service.create_link(rt, lakes_app.id, ShareLinkCreate())
    share_service.revoke_link(rt, revoked.id)
    past = datetime.now(UTC) - timedelta(minutes=1)
    expired = share_service.create_link(rt, lakes_app.id, ShareLinkCreate(expires_at=past))
    with TestClient(app) as client:
        for token, words in ((revoked.token, "turned off"), (expired.token, "expired"), ("nope" * 8, "does not exist")):
            page = client.get(f"/s/{token}", follow_redirects=False)
            assert page.status_code == 404 and words in page.text and "login" not in page.text.lower()
            api = client.get(f"/api/share/{token}/chats")
            assert api.status_code == 404 and words in api.json()["error"]["message"]


def test_a_password_link_asks_for_its_password_first(app, lakes_app, rt):
    token = share_service.create_link(rt, lakes_app.id, ShareLinkCreate(password="open sesame")).token
    with TestClient(app) as client:
        page = client.get(f"/s/{token}")
        assert page.status_code == 200 and 'name="password"' in page.text and "kb-visitor" not in page.text
        form = {"password": "wrong", "csrf_token": csrf_token_of(page.text)}
        refused = client.post(f"/s/{token}/unlock", data=form, follow_redirects=False)
        assert refused.status_code == 401 and "not this link" in refused.text
        form["password"] = "open sesame"
        assert client.post(f"/s/{token}/unlock", data=form, follow_redirects=False).status_code == 303
        _, headers = open_page(client, f"/s/{token}")
        assert client.get(f"/api/share/{token}/chats", headers=headers).status_code == 200


def test_only_listed_origins_may_frame_the_page_or_read_the_bubbles_settings(app, lakes_app, rt):
    listed = "https://docs.example.com"
    token = share_service.create_link(rt, lakes_app.id, ShareLinkCreate(allowed_origins=[listed])).token
    closed = share_service.create_link(rt, lakes_app.id, ShareLinkCreate()).token
    with TestClient(app) as client:
        page = client.get(f"/s/{token}?embed=1")
        assert f"frame-ancestors 'self' {listed}" in page.headers["content-security-policy"]
        assert "x-frame-options" not in page.headers
        assert "frame-ancestors 'none'" in client.get(f"/s/{closed}").headers["content-security-policy"]
        allowed = client.get(f"/api/share/{token}/embed.json", headers={"Origin": listed})
        assert allowed.headers["access-control-allow-origin"] == listed
        refused = client.get(f"/api/share/{token}/embed.json", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in refused.headers


def test_a_links_rate_limit_counts_each_visitor(app, lakes_app, rt):
    token = share_service.create_link(rt, lakes_app.id, ShareLinkCreate(rate_limit_per_minute=1)).token
    with TestClient(app) as client:
        _, headers = open_page(client, f"/s/{token}")
        visitor_ask(client, token, headers, "limited-1")
        body = {"model": "x", "messages": [{"role": "user", "content": "again"}], "chatId": "limited-1"}
        refused = client.post(f"/api/share/{token}/chat", json=body, headers=headers)
        assert refused.status_code == 429 and "per minute" in refused.json()["error"]["message"]
