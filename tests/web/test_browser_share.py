"""A share link in a real browser, as a visitor with no cookies meets it: a streamed answer whose citation opens,
and Stop on a long answer ending the generation on the server (its own count of running generations)."""

from __future__ import annotations

import time

import httpx
import pytest

from kb.http.app import create_app
from kb.ml.messages import last_user_text
from tests.browser_support import log_in, screenshot
from tests.helpers import ROOT
from tests.web.support import ANSWER, QUESTION, web_registry

pytestmark = pytest.mark.browser

LONG_QUESTION = "Tell me everything, at length, about the lakes"
LONG_ANSWER = " ".join(["The lake is deep and cold and full of fish."] * 60)  # ~600 pieces, 30 s at 0.05 s each
STOP_WITHIN_SECONDS = 1.0  # the promise: Stop frees the model within a second


def _reply(messages: list[dict]) -> str:
    return LONG_ANSWER if "at length" in last_user_text(messages) else ANSWER


@pytest.fixture
def app(settings, db):
    return create_app(settings, db=db, registry=web_registry(settings, pause=0.05, replies=_reply))


def running(server) -> int:
    return httpx.get(f"{server.url}/api/generations", headers=ROOT).json()["running"]


def ask(page, question: str) -> None:
    page.fill("form.ask textarea", question)
    page.keyboard.press("Enter")


def test_a_visitor_opens_a_share_link_gets_a_cited_answer_and_stop_ends_the_generation(
    page, live_server, lakes_app, rt
):
    created = httpx.post(f"{live_server.url}/api/apps/{lakes_app.id}/share-links", json={"name": "web"}, headers=ROOT)
    link = created.json()
    assert page.context.cookies() == []  # a fresh browser: no admin session, no visitor yet

    page.goto(link["url"])
    assert page.locator(".chat-head h1").inner_text() == "lakes"
    assert page.locator("a[href='/admin']").count() == 0
    ask(page, QUESTION)
    answer = page.locator("li.message.assistant .answer").first
    answer.locator("button.cite").first.click()
    panel = page.locator("#quote-panel")
    panel.wait_for(state="visible")
    assert panel.locator(".quote-source").inner_text() == "lakes.md"
    page.keyboard.press("Escape")
    page.locator('.chat-history a[aria-current="page"]').wait_for()
    screenshot(page, "share-page")

    ask(page, LONG_QUESTION)
    streaming = page.locator("li.message.streaming .answer-body.plain")
    page.wait_for_function(
        "() => (document.querySelector('li.message.streaming .answer-body.plain') || {}).textContent?.startsWith('The lake')"
    )
    assert running(live_server) == 1
    page.locator("form.ask button.stop").click()
    stopped_at = time.monotonic()
    while running(live_server) and time.monotonic() - stopped_at < STOP_WITHIN_SECONDS:
        time.sleep(0.05)
    assert running(live_server) == 0, f"the model still ran {STOP_WITHIN_SECONDS} s after Stop"
    page.locator("li.message.assistant .stopped-note").wait_for()
    assert streaming.count() == 0 and page.locator("form.ask button.stop").is_hidden()

    # The partial answer is kept, marked stopped, and it is the visitor's: a reload shows it.
    chat_id = page.locator("section.chat").get_attribute("data-chat-id")
    stored = httpx.get(f"{live_server.url}/api/chats/{chat_id}", headers=ROOT).json()["messages"]
    partial = stored[-1]
    assert partial["timings"]["finish_reason"] == "stopped"
    assert 0 < len(partial["content"]) < len(LONG_ANSWER) and LONG_ANSWER.startswith(partial["content"])
    page.reload()
    assert page.locator("li.message.assistant .stopped-note").count() == 1


def test_the_share_page_in_chinese(page, live_server, lakes_app):
    created = httpx.post(f"{live_server.url}/api/apps/{lakes_app.id}/share-links", json={}, headers=ROOT)
    page.goto(created.json()["url"] + "?lang=zh")
    assert page.locator("form.ask button[type=submit]").inner_text() == "提问"
    assert page.locator(".new-chat").inner_text() == "新对话"
    screenshot(page, "share-page-zh")


def test_the_admin_reads_a_visitors_conversation_in_the_logs(page, live_server, lakes_app):
    link = httpx.post(
        f"{live_server.url}/api/apps/{lakes_app.id}/share-links", json={"name": "Docs site"}, headers=ROOT
    ).json()
    page.goto(link["url"])
    ask(page, QUESTION)
    page.locator('.chat-history a[aria-current="page"]').wait_for()

    log_in(page)
    page.goto(f"/admin/apps/{lakes_app.id}/logs?link={link['id']}")
    row = page.locator("table.chat-logs tbody tr")
    assert row.count() == 1 and "Share link: Docs site" in row.inner_text()
    screenshot(page, "logs-page")
    page.goto(f"/admin/apps/{lakes_app.id}/logs?link={link['id']}&lang=zh")
    assert "分享链接：Docs site" in row.inner_text()
    screenshot(page, "logs-page-zh")
    row.locator("a").click()
    page.locator("details.annotate summary").click()
    assert page.locator("details.annotate textarea[name=question]").input_value() == QUESTION
    page.goto(page.url.split("?")[0] + "?lang=en")
