"""Finding 3 of the hardening review: quotas could be overrun.

A client that dropped a stream before its end was charged nothing, and parallel requests or a large
`max_tokens` passed the quota because it was checked only at authentication. Now a request's most
tokens (its prompt and max_tokens) are reserved against the quota atomically before generating, and
the real count, or the prompt and partial output of a dropped stream, replaces the reservation.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from kb.testing import EchoChatModel
from tests.helpers import ROOT
from tests.server.support import EndlessChatModel, wait_until

QUESTION = " ".join(f"word{n}" for n in range(30))


class PacedEcho(EchoChatModel):
    """Echoes one piece every 50 ms, so parallel requests overlap."""

    def _pieces(self, answer, prompt_tokens, params, cancel):
        for item in super()._pieces(answer, prompt_tokens, params, cancel):
            yield item
            time.sleep(0.05)


@pytest.fixture
def server(app, live_server) -> str:
    app.state.registry.register_chat(PacedEcho("paced"))
    app.state.registry.register_chat(EndlessChatModel("endless"))
    return live_server.url


def _key(url: str, **fields) -> tuple[int, dict[str, str]]:
    created = httpx.post(f"{url}/api/keys", json={"name": "quota", **fields}, headers=ROOT).json()
    return created["id"], {"Authorization": f"Bearer {created['key']}"}


def _tokens_used(url: str, key_id: int) -> int:
    keys = httpx.get(f"{url}/api/keys", headers=ROOT).json()
    return next(k["tokens_used"] for k in keys if k["id"] == key_id)


def _chat(url: str, headers: dict, model: str, max_tokens: int) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": max_tokens}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60)


def test_a_client_that_drops_a_stream_is_charged_for_the_prompt_and_partial_output(server):
    key_id, headers = _key(server)
    body = {"model": "endless", "messages": [{"role": "user", "content": QUESTION}], "stream": True, "max_tokens": 50}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, headers=headers, timeout=60) as response:
        lines = response.iter_lines()
        assert [next(lines) for _ in range(6)]  # a few pieces arrive, then the client leaves
    assert wait_until(lambda: _tokens_used(server, key_id) > 0), "a dropped stream was charged nothing"


def test_parallel_requests_cannot_together_overrun_the_quota(server):
    key_id, headers = _key(server, token_quota=170)  # room for two requests' prompt and 40 tokens, not three
    start = threading.Barrier(4)

    def one(_: int) -> int:
        start.wait()
        return _chat(server, headers, "paced", 40).status_code

    with ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(one, range(4)))
    assert codes.count(200) <= 2 and set(codes) <= {200, 429}, codes
    assert _tokens_used(server, key_id) <= 170


def test_a_max_tokens_larger_than_the_quota_left_is_refused_before_generating(server, app):
    key_id, headers = _key(server, token_quota=100)
    refused = _chat(server, headers, "paced", 1000)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"
    assert "max_tokens" in refused.json()["error"]["message"]
    assert _tokens_used(server, key_id) == 0
