"""A Chinese answer whose characters span several tokens, with a stray byte the model never completed, reaches
readers of /v1 and of the web chat without a replacement character (U+FFFD)."""

from __future__ import annotations

import httpx
import pytest

from kb.http.app import create_app
from kb.ml.registry import ModelRegistry
from kb.testing import HashEmbedder
from tests.helpers import ROOT
from tests.web.support import ByteTokenChatModel, sse_payloads

CHINESE = "重点上浩订都在日内瓦湖边，湖水又深又冷。[1]"


@pytest.fixture
def app(settings, db):
    registry = ModelRegistry(settings)
    registry.register_chat(ByteTokenChatModel(lambda messages: CHINESE, name="scripted"))
    registry.register_embedder(HashEmbedder(name="hash"))
    return create_app(settings, db=db, registry=registry)


def test_v1_streams_the_chinese_answer_without_a_replacement_character(client, lakes_app):
    body = {"model": "app:lakes", "messages": [{"role": "user", "content": "日内瓦湖？"}], "stream": True}
    response = client.post("/v1/chat/completions", json=body, headers=ROOT)
    events = sse_payloads(response.text)
    deltas = [e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"]]
    assert len([d for d in deltas if d]) > 10  # it really streamed piece by piece
    assert "".join(deltas) == CHINESE
    assert "\ufffd" not in response.text


@pytest.mark.browser
def test_the_web_chat_shows_the_chinese_answer_without_a_replacement_character(page, live_server, lakes_app):
    link = httpx.post(f"{live_server.url}/api/apps/{lakes_app.id}/share-links", json={}, headers=ROOT).json()
    page.goto(link["url"])
    page.fill("form.ask textarea", "日内瓦湖？")
    page.keyboard.press("Enter")
    answer = page.locator("li.message.assistant .answer .markdown")
    answer.wait_for()
    assert answer.inner_text().startswith("重点上浩订都") and "\ufffd" not in page.content()
