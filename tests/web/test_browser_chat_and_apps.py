"""The chat and the apps/keys admin in a real browser: a streamed answer whose citation opens its quote,
hostile text that runs nothing (the page fixture fails on any dialog), phone width, 中文, app and key forms."""

from __future__ import annotations

import re

import pytest

from kb.http.app import create_app
from kb.services import keys as key_service
from tests.answer_data import add_knowledge
from tests.browser_support import log_in, screenshot
from tests.web.support import ANSWER, LAKES, QUESTION, web_registry

pytestmark = pytest.mark.browser


@pytest.fixture
def app(settings, db):
    # A pause between pieces, so the page shows the answer arriving before it is rendered.
    return create_app(settings, db=db, registry=web_registry(settings, pause=0.04))


def ask(page, question: str = QUESTION) -> None:
    page.fill("form.ask textarea", question)
    page.keyboard.press("Enter")


def streamed_text(page) -> str:
    """The plain text on show while the answer streams in (before the server's rendering replaces it)."""
    shown = page.wait_for_function(
        """() => {
            const node = document.querySelector("li.message.streaming .answer-body.plain");
            return node && node.textContent.startsWith("Lake") ? node.textContent : null;
        }"""
    )
    return shown.json_value()


def test_a_streamed_answer_cites_a_quote_that_opens_with_its_source_and_page(page, lakes_app, rt):
    log_in(page)
    page.goto("/")
    assert page.locator("#app-picker option:checked").inner_text() == "lakes"
    ask(page)
    assert page.locator("li.message.user .bubble").inner_text() == QUESTION
    partial = streamed_text(page)
    assert ANSWER.startswith(partial) and len(partial) < len(ANSWER)  # a part of the answer, as plain text

    answer = page.locator("li.message.assistant .answer")
    answer.locator(".markdown strong").wait_for()
    assert answer.locator(".markdown strong").inner_text() == "largest"
    assert "<script>alert(1)</script>" in answer.locator(".markdown").inner_text()  # shown, not run
    assert answer.locator("img, script, iframe").count() == 0

    answer.locator("button.cite").first.click()
    panel = page.locator("#quote-panel")
    panel.wait_for(state="visible")
    assert panel.locator(".quote-panel-number").inner_text() == "[1]"
    assert panel.locator(".quote-source").inner_text() == "lakes.md"
    assert panel.locator(".quote-page").inner_text() == "page 1"
    assert "<img src=x onerror=alert(1)>" in panel.locator(".quote-text").inner_text()
    assert panel.locator("img, script").count() == 0
    screenshot(page, "chat-citations")
    page.keyboard.press("Escape")
    panel.wait_for(state="hidden")

    # The conversation is kept: the address names it, and the sidebar lists it as the current one.
    page.wait_for_function("() => new URL(location.href).searchParams.has('chat')")
    current = page.locator('.chat-history a[aria-current="page"]')
    current.wait_for()
    assert current.inner_text() == QUESTION

    up = answer.locator('button.feedback-button[data-rating="up"]')
    up.click()
    page.wait_for_function(
        """() => document.querySelector('button.feedback-button[data-rating="up"]').getAttribute("aria-pressed") === "true" """
    )
    page.reload()
    assert page.locator('button.feedback-button[data-rating="up"]').get_attribute("aria-pressed") == "true"
    assert page.locator("li.message").count() == 2


def test_a_follow_up_in_a_new_chat_starts_a_second_conversation(page, lakes_app):
    log_in(page)
    page.goto("/")
    ask(page)
    page.locator("li.message.assistant .answer button.cite").first.wait_for()
    page.click("a.new-chat")
    page.wait_for_url(re.compile(r"/\?app=\d+$"))
    assert page.locator("li.message").count() == 0
    ask(page, "And which fish live in the lake?")
    page.locator("li.message.assistant .answer .markdown").wait_for()
    page.wait_for_function("() => document.querySelectorAll('.chat-history a').length === 2")


def test_the_chat_works_on_a_phone_and_in_chinese(page, lakes_app):
    log_in(page)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/")
    page.click("a[data-lang=zh]")
    page.wait_for_url("**/?lang=zh")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("a.new-chat").inner_text() == "新对话"
    assert page.locator("form.ask button[type=submit]").inner_text() == "提问"
    ask(page)
    answer = page.locator("li.message.assistant .answer")
    answer.locator("button.cite").first.wait_for()
    assert answer.locator(".sources summary").inner_text() == "来源（2）"
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the chat is {overflow}px wider than a phone screen"
    answer.locator("button.cite").first.click()
    panel = page.locator("#quote-panel")
    panel.wait_for(state="visible")
    assert panel.locator(".quote-page").inner_text() == "第 1 页"
    box = panel.bounding_box()
    assert box["width"] <= 390 and box["x"] >= 0
    screenshot(page, "chat-phone-zh")


def test_an_admin_creates_an_app_tries_it_and_creates_a_key_shown_once(page, rt):
    add_knowledge(rt, "lakes", LAKES)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    log_in(page)
    page.click("nav.admin-nav >> text=Apps")
    page.wait_for_url("**/admin/apps")
    page.click("text=New app")
    page.fill("#app-name", "lake-guide")
    page.fill("#app-system-prompt", "Answer in one sentence.")
    page.check("input[name=dataset_ids]")
    page.select_option("#app-mode", "hybrid")
    page.fill("#app-limit", "2")
    page.click("form.app-form button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/apps/\d+\?notice=app_created"))
    assert page.locator("[role=status]").first.inner_text() == "App created. Try it below, or open it in the chat."

    ask(page)
    try_it = page.locator("section.try-it li.message.assistant .answer")
    try_it.locator("button.cite").first.wait_for()
    try_it.locator("button.cite").first.click()
    page.locator("#quote-panel").wait_for(state="visible")
    assert page.locator("#quote-panel .quote-source").inner_text() == "lakes.md"
    page.click(".quote-panel-close")
    screenshot(page, "admin-apps")

    page.click("nav.admin-nav >> text=API keys")
    page.wait_for_url("**/admin/keys")
    page.fill("#key-name", "support website")
    page.select_option("#key-scope", label="Only the app lake-guide")
    page.fill("#key-expiry", "30")
    page.fill("#key-quota", "100000")
    page.click("form.key-form button[type=submit]")
    key = page.locator("#new-key-value").input_value()
    assert key.startswith("kb-")
    page.click("button.copy-button")
    page.locator(".copy-status").filter(has_text="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == key
    row = page.locator("table.keys tbody tr").first
    assert "support website" in row.inner_text() and "app lake-guide" in row.inner_text()
    screenshot(page, "admin-keys")

    page.goto("/admin/keys")
    assert page.locator("#new-key-value").count() == 0 and key not in page.content()
    page.click("table.keys details.confirm summary")
    page.click("table.keys details.confirm button[type=submit]")
    page.wait_for_url("**/admin/keys?notice=key_revoked")
    assert key_service.list_keys(rt.db)[0].revoked_at is not None
