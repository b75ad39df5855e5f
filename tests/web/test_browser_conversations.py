"""Conversation care in the browser: an app's opening message and suggested questions, rename and delete
from the sidebar, Markdown export, a feedback comment, and Log out on the chat page."""

from __future__ import annotations

from pathlib import Path

import pytest

from kb.services import apps as app_service
from kb.services.apps import AppUpdate, ChatSettings
from tests.browser_support import log_in
from tests.web.support import ANSWER, QUESTION

pytestmark = pytest.mark.browser


@pytest.fixture
def friendly_app(rt, lakes_app):
    chat = ChatSettings(opening_message="Hello! Ask me about the lakes.", suggested_questions=[QUESTION, "Which fish?"])
    return app_service.update_app(rt, lakes_app.id, AppUpdate(chat=chat))


def test_a_suggested_question_asks_itself_and_the_conversation_can_be_renamed_exported_and_deleted(
    page, friendly_app, rt
):
    log_in(page)
    page.goto("/")
    assert page.locator("li.message.opening").inner_text() == "Hello! Ask me about the lakes."
    page.locator("button.suggestion", has_text=QUESTION).click()
    page.locator("li.message.assistant .answer .markdown strong").wait_for()
    assert page.locator("li.message.user .bubble").inner_text() == QUESTION
    item = page.locator(".chat-history li.chat-item").first
    item.locator("a[aria-current=page]").wait_for()

    # A comment with the thumbs.
    feedback = page.locator(".feedback").first
    feedback.locator("input.feedback-comment").fill("Right lake, but say its depth")
    feedback.locator('button.feedback-button[data-rating="down"]').click()
    page.wait_for_function("() => document.querySelector('.feedback').dataset.saved === 'true'")
    chat_id = item.get_attribute("data-chat-id")
    stored = page.request.get(f"/api/chats/{chat_id}").json()["messages"][-1]
    assert (stored["feedback"], stored["feedback_comment"]) == ("down", "Right lake, but say its depth")

    item.hover()
    item.locator("button.chat-rename").click()
    title = item.locator("input.chat-title-input")
    title.fill("Geneva questions")
    title.press("Enter")
    page.wait_for_function("() => document.querySelector('.chat-history li a').textContent === 'Geneva questions'")
    page.reload()
    assert page.locator(".chat-history li.chat-item a").first.inner_text() == "Geneva questions"

    item = page.locator(".chat-history li.chat-item").first
    item.hover()
    with page.expect_download() as download:
        item.locator("button.chat-export").click()
    markdown = Path(download.value.path()).read_text(encoding="utf-8")
    assert markdown.startswith("# Geneva questions") and f"## Question\n\n{QUESTION}" in markdown
    assert ANSWER in markdown and "lakes.md" in markdown

    item.hover()
    delete = item.locator("button.chat-delete")
    delete.click()
    assert delete.inner_text() == "Delete?"  # a second press confirms, no browser dialog
    delete.click()
    page.wait_for_url(lambda url: "chat=" not in url)
    assert page.locator(".chat-history li.chat-item").count() == 0
    assert page.request.get(f"/api/chats/{chat_id}").status == 404


def test_the_chat_page_offers_log_out(page, lakes_app):
    log_in(page)
    page.goto("/")
    page.locator("form.logout button").click()
    page.wait_for_url("**/admin/login**")
    page.goto("/")
    page.wait_for_url("**/admin/login**")
