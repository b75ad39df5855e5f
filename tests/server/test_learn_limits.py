"""Finding 4 of the hardening review: /learn let anyone without credentials stall the server.

Waiting requests held server threads for up to 10 s each, and invalid input trained the default
model outside the one-at-a-time gate; about 40 concurrent requests stalled everything.
"""

from __future__ import annotations

import threading

from kb.http.pages import learn


class WatchedGate(threading.Semaphore):
    """The one-at-a-time gate, remembering how each request asked for it."""

    def __init__(self) -> None:
        super().__init__(1)
        self.asks: list[tuple] = []

    def acquire(self, *args, **kwargs) -> bool:
        self.asks.append((args, kwargs))
        return super().acquire(*args, **kwargs)


def test_a_busy_learn_page_refuses_at_once_instead_of_holding_a_server_thread(client, monkeypatch):
    gate = WatchedGate()
    gate.acquire()  # a training run is in progress
    gate.asks.clear()
    monkeypatch.setattr(learn, "_training", gate)
    response = client.get("/learn", params={"steps": "61"})
    assert response.status_code == 429 and response.headers["retry-after"] == "5"
    assert gate.asks == [((), {"blocking": False})], "the request did not wait for the gate"


def test_invalid_input_never_trains_outside_the_gate(client, monkeypatch):
    calls = []
    real = learn.train_tiny_gpt

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(learn, "train_tiny_gpt", counted)
    learn._default_result.cache_clear()
    for steps in ("-3", "ten", "99999", "0", "²"):
        assert client.get("/learn", params={"steps": steps}).status_code == 400
    assert len(calls) <= 1, "the default model shown beside the message is trained once, then reused"


def test_learn_is_rate_limited_per_address(client):
    codes = [client.get("/learn", params={"steps": "x"}).status_code for _ in range(31)]
    assert codes[:30] == [400] * 30 and codes[30] == 429
