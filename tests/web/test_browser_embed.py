"""Embedding a share link on another site, in Chromium: a listed site shows the chat in an iframe and gets the
bubble; an unlisted site is refused by the browser itself (CSP frame-ancestors, CORS)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.browser_support import screenshot
from tests.helpers import ROOT, free_port

pytestmark = pytest.mark.browser


class HostSite:
    """Another website on its own port (another origin), serving one page that embeds kb."""

    def __init__(self) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.page = ""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = site.page.encode() if self.path == "/" else b""
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def embedding(self, kb_url: str, token: str) -> str:
        self.page = (
            "<!doctype html><title>Docs</title><h1>Our docs</h1>"
            f'<iframe id="chat" src="{kb_url}/s/{token}?embed=1" width="600" height="500"></iframe>'
            f'<script src="{kb_url}/static/embed.js" data-share="{kb_url}/s/{token}"></script>'
        )
        return self.origin + "/"


@pytest.fixture
def host_site() -> Iterator[HostSite]:
    site = HostSite()
    site.thread.start()
    yield site
    site.server.shutdown()
    site.server.server_close()


def new_link(server, app_id: int, origins: list[str]) -> str:
    created = httpx.post(f"{server.url}/api/apps/{app_id}/share-links", json={"allowed_origins": origins}, headers=ROOT)
    assert created.status_code == 201, created.text
    return created.json()["token"]


def test_a_listed_site_shows_the_chat_in_an_iframe_and_as_a_bubble(page, live_server, lakes_app, host_site):
    token = new_link(live_server, lakes_app.id, [host_site.origin])
    page.goto(host_site.embedding(live_server.url, token))
    frame = page.frame_locator("#chat")
    frame.locator("section.chat textarea").wait_for()
    assert frame.locator(".topbar").is_hidden()  # the compact embedded view
    bubble = page.locator("button.kb-chat-bubble")
    bubble.click()
    page.frame_locator("iframe.kb-chat-frame").locator("section.chat").wait_for()
    assert bubble.get_attribute("aria-expanded") == "true"
    screenshot(page, "share-embedded")


def test_an_unlisted_site_is_refused_by_the_browser(page, live_server, lakes_app, host_site, page_problems):
    token = new_link(live_server, lakes_app.id, ["https://somewhere-else.example"])
    with page.expect_console_message(lambda message: "CORS" in message.text):
        page.goto(host_site.embedding(live_server.url, token))
    page.wait_for_load_state("load")
    frame = page.frame(url=lambda url: "/s/" in url)
    assert frame is None or frame.locator("section.chat").count() == 0
    assert page.locator("button.kb-chat-bubble").count() == 0
    assert any("frame-ancestors" in problem or "CORS" in problem for problem in page_problems)
    page_problems.clear()  # the refusals above are the browser doing its job
