"""An OpenAI client closing its stream stops the model on the server; the partial answer is kept, marked stopped."""

from __future__ import annotations

import time

import httpx
import pytest

from kb.http.app import create_app
from tests.helpers import ROOT
from tests.web.support import web_registry

LONG_ANSWER = " ".join(["The lake is deep and cold and full of fish."] * 60)


@pytest.fixture
def app(settings, db):
    return create_app(settings, db=db, registry=web_registry(settings, pause=0.05, replies=lambda m: LONG_ANSWER))


def running(server) -> int:
    return httpx.get(f"{server.url}/api/generations", headers=ROOT).json()["running"]


def test_closing_the_stream_cancels_the_generation_and_keeps_the_partial_answer(live_server, lakes_app):
    body = {
        "model": "app:lakes",
        "messages": [{"role": "user", "content": "Which is the largest lake?"}],
        "stream": True,
        "chatId": "closed-early",
    }
    with httpx.stream("POST", f"{live_server.url}/v1/chat/completions", json=body, headers=ROOT) as response:
        lines = response.iter_lines()
        received = [next(lines) for _ in range(8)]
        assert "lake" in "".join(received)
        assert running(live_server) == 1
    deadline = time.monotonic() + 5  # generous: this test checks that it stops, the browser test how fast
    while running(live_server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running(live_server) == 0
    stored = httpx.get(f"{live_server.url}/api/chats/closed-early", headers=ROOT)
    answer = stored.json()["messages"][-1]
    assert answer["timings"]["finish_reason"] == "stopped"
    assert 0 < len(answer["content"]) < len(LONG_ANSWER) and LONG_ANSWER.startswith(answer["content"])
