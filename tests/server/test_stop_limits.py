"""Finding 12 of the hardening review: the `stop` list was unbounded, and scanned on every token while
the model lock is held. It is capped as OpenAI caps it: 4 sequences, each of bounded length."""

from __future__ import annotations

from kb.testing import EchoChatModel
from tests.helpers import ROOT


def _chat(client, stop) -> object:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stop": stop}
    return client.post("/v1/chat/completions", json=body, headers=ROOT)


def test_the_stop_list_is_capped_at_four_short_sequences(app, client):
    app.state.registry.register_chat(EchoChatModel("echo"))
    many = _chat(client, [f"s{n}" for n in range(5000)])
    long = _chat(client, ["x" * 101])
    assert many.status_code == 400 and many.json()["error"]["message"] == "stop has 5000 sequences; the limit is 4"
    assert long.status_code == 400 and "the limit is 100" in long.json()["error"]["message"]
    assert _chat(client, ["a", "b", "c", "d"]).status_code == 200
    assert _chat(client, "END").status_code == 200
