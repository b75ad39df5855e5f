"""Headless Debian Chromium driven by Playwright (sync API) against the app on a loopback port.

Every page fails its test on any JavaScript dialog (an `alert` from injected markup would be one),
on console errors (CSP violations are reported there), on uncaught page errors, and when a script,
stylesheet, image or font fails to load. A page or fetch answering 4xx is not a problem by itself:
a refused login or a rejected upload does that on purpose, and the test checks what the user sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Chromium logs every non-2xx response as a console error; the response listener judges those instead.
_HTTP_STATUS_CONSOLE_ERROR = "Failed to load resource: the server responded with a status of"
_ANSWERS_THE_TEST_CHECKS = {"document", "fetch", "xhr", "eventsource"}


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """One Chromium per test run; each test gets its own context (fresh cookies and storage)."""
    if not CHROMIUM.exists():
        pytest.skip(
            "browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install chromium; .ci/run does)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Playwright gives a launched (non-persistent) browser a fresh temporary user-data dir.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page_problems() -> list[str]:
    """Dialogs, console errors and page errors seen so far; a test that provokes one on purpose clears it."""
    return []


@pytest.fixture
def page(browser, live_server, page_problems) -> Iterator:
    """A page on the live server (relative URLs work) that fails the test on dialogs and console errors."""
    context = browser.new_context(base_url=live_server.url, locale="en-US", viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    page = context.new_page()

    def on_dialog(dialog) -> None:
        page_problems.append(f"JavaScript dialog ({dialog.type}): {dialog.message}")
        dialog.dismiss()

    def on_console(message) -> None:
        if message.type == "error" and not message.text.startswith(_HTTP_STATUS_CONSOLE_ERROR):
            page_problems.append(f"console error: {message.text}")

    def on_response(response) -> None:
        if response.status >= 400 and response.request.resource_type not in _ANSWERS_THE_TEST_CHECKS:
            page_problems.append(f"HTTP {response.status} for {response.request.resource_type} {response.url}")

    def on_request_failed(request) -> None:
        # Aborted loads are navigation moving on (or nosniff refusing a 404 page as a script or
        # stylesheet, which the console reports); anything else is a real network failure.
        if request.resource_type not in _ANSWERS_THE_TEST_CHECKS and request.failure != "net::ERR_ABORTED":
            page_problems.append(f"{request.resource_type} {request.url} failed to load: {request.failure}")

    page.on("dialog", on_dialog)
    page.on("console", on_console)
    page.on("response", on_response)
    page.on("requestfailed", on_request_failed)
    page.on("pageerror", lambda error: page_problems.append(f"page error: {error}"))
    yield page
    context.close()
    if page_problems:
        pytest.fail("the page misbehaved:\n" + "\n".join(page_problems))
