"""The admin's chat logs: conversations per app filtered by feedback, date and share link, and an annotation
saved from the logs page that the next asker gets as the first quote."""

from __future__ import annotations

from selectolax.lexbor import LexborHTMLParser as HTMLParser

from kb.services import share_links as share_service
from kb.services.share_links import ShareLinkCreate
from tests.helpers import ROOT, csrf_token_of
from tests.web.support import sse_payloads

QUESTION = "What bait catches perch best?"
CORRECTION = "Live worms on a small hook catch perch best, says the harbour master."


def ask(client, chat_id: str | None = None) -> list[dict]:
    body = {"model": "app:lakes", "messages": [{"role": "user", "content": QUESTION}], "stream": True, "detail": True}
    if chat_id:
        body["chatId"] = chat_id
    response = client.post("/v1/chat/completions", json=body, headers=ROOT)
    assert response.status_code == 200, response.text
    return sse_payloads(response.text)


def chat_ids(page_html: str) -> list[str]:
    return [row.attributes["data-chat-id"] for row in HTMLParser(page_html).css("table.chat-logs tr[data-chat-id]")]


def test_an_annotation_saved_from_the_logs_is_the_first_quote_next_time(admin_client, lakes_app):
    ask(admin_client, "perch-1")
    assert chat_ids(admin_client.get(f"/admin/apps/{lakes_app.id}/logs").text) == ["perch-1"]
    page = admin_client.get(f"/admin/apps/{lakes_app.id}/logs/perch-1")
    assert page.status_code == 200 and "Correct this answer" in page.text
    form = {
        "csrf_token": csrf_token_of(page.text),
        "question": QUESTION,
        "answer": CORRECTION,
        "dataset_id": str(lakes_app.dataset_ids[0]),
    }
    saved = admin_client.post(f"/admin/apps/{lakes_app.id}/logs/perch-1/annotate", data=form, follow_redirects=False)
    assert saved.status_code == 303 and "notice=annotated" in saved.headers["location"]

    first_quote = ask(admin_client)[-1]["quotes"][0]
    assert first_quote["text"] == f"{QUESTION}\n{CORRECTION}"


def test_an_annotation_must_go_into_one_of_the_apps_datasets(admin_client, lakes_app):
    ask(admin_client, "perch-2")
    page = admin_client.get(f"/admin/apps/{lakes_app.id}/logs/perch-2")
    form = {"csrf_token": csrf_token_of(page.text), "question": "q", "answer": "a", "dataset_id": "999"}
    refused = admin_client.post(f"/admin/apps/{lakes_app.id}/logs/perch-2/annotate", data=form)
    assert refused.status_code == 400 and "the app" in refused.text


def test_the_logs_filter_by_feedback_date_and_share_link(admin_client, lakes_app, rt):
    ask(admin_client, "rated-down")
    ask(admin_client, "unrated")
    messages = admin_client.get("/api/chats/rated-down").json()["messages"]
    feedback = {"rating": "down", "comment": "wrong fish"}
    admin_client.post(f"/api/chats/rated-down/messages/{messages[-1]['id']}/feedback", json=feedback)
    link = share_service.create_link(rt, lakes_app.id, ShareLinkCreate(name="docs site"))
    base = f"/admin/apps/{lakes_app.id}/logs"
    assert sorted(chat_ids(admin_client.get(base).text)) == ["rated-down", "unrated"]
    assert chat_ids(admin_client.get(f"{base}?feedback=down").text) == ["rated-down"]
    assert chat_ids(admin_client.get(f"{base}?feedback=comment").text) == ["rated-down"]
    assert chat_ids(admin_client.get(f"{base}?feedback=up").text) == []
    assert chat_ids(admin_client.get(f"{base}?until=2000-01-01").text) == []
    assert len(chat_ids(admin_client.get(f"{base}?since=2000-01-01").text)) == 2
    assert chat_ids(admin_client.get(f"{base}?link={link.id}").text) == []
    page = admin_client.get(f"/admin/apps/{lakes_app.id}/logs/rated-down")
    assert "wrong fish" in page.text
