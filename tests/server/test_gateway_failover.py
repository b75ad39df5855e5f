"""A remote model served by two providers, the first one down: the answer comes from the second, over real HTTP.

The working provider is a second kb instance serving a fake model, so both hops are real HTTP through kb's gateway.
"""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import openai
import pytest
from sqlalchemy import text

from kb.config import Settings
from kb.http.app import create_app
from kb.testing import EchoChatModel, HashEmbedder
from tests.helpers import ROOT_KEY, LiveServer, free_port
from tests.server.support import QUESTION, sdk


def kb_settings(tmp_path, name: str, database_url: str, **extra) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / name, database_url=database_url, root_key=ROOT_KEY, **extra)


@pytest.fixture
def dead_url():
    """A port that refuses connections: bound (so no later server can take it) but never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


@pytest.fixture
def upstream(tmp_path, database_url, db):
    app = create_app(kb_settings(tmp_path, "upstream", database_url), db=db)
    app.state.registry.register_chat(EchoChatModel("echo"))
    app.state.registry.register_embedder(HashEmbedder(name="hash"))
    with LiveServer(app, free_port()) as server:
        yield server


@pytest.fixture
def client(tmp_path, database_url, db, upstream, dead_url) -> openai.OpenAI:
    dead = dead_url
    alive = {"base_url": f"{upstream.url}/v1", "api_key": ROOT_KEY, "priority": 1}
    models_file = tmp_path / "models.json"
    models_file.write_text(
        json.dumps(
            {
                "chat": [
                    {
                        "name": "relay",
                        "backend": "remote",
                        "providers": [{"base_url": dead, "priority": 0}, {**alive, "model": "echo"}],
                    },
                    {"name": "nowhere", "backend": "remote", "providers": [{"base_url": dead}]},
                ],
                "embedding": [
                    {
                        "name": "relay-embed",
                        "backend": "remote",
                        "providers": [{"base_url": dead}, {**alive, "model": "hash"}],
                    },
                ],
            }
        )
    )
    app = create_app(kb_settings(tmp_path, "gateway", database_url, models_file=models_file), db=db)
    with LiveServer(app, free_port()) as server:
        yield sdk(server.url)
    # Loaded models live for the whole process; close their connections now rather than at some later GC.
    registry = app.state.registry
    for model in (registry.chat("relay"), registry.chat("nowhere"), registry.embedder("relay-embed")):
        model.pool.client.close()


def test_chat_fails_over_to_the_provider_that_is_up(client, db):
    response = client.chat.completions.create(model="relay", messages=QUESTION)
    assert response.choices[0].message.content == "Echo: What is pgvector?"
    assert response.model == "relay"
    assert response.usage.prompt_tokens == EchoChatModel().count_prompt_tokens(QUESTION), "usage comes from upstream"
    # The upstream kb logs its hop once its response has gone out, which may be after the relay answered.
    deadline = time.monotonic() + 10
    while True:
        with db.session() as session:
            logged = session.execute(
                text("SELECT model, status FROM usage_log WHERE endpoint = '/v1/chat/completions'")
            ).all()
        if len(logged) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert sorted(logged) == [("echo", 200), ("relay", 200)], "each kb logged its own hop"


def test_streamed_chat_fails_over_too(client):
    chunks = list(
        client.chat.completions.create(
            model="relay", messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: What is pgvector?"
    assert chunks[-1].usage.completion_tokens == 4


def test_embeddings_fail_over_too(client):
    response = client.embeddings.create(model="relay-embed", input=["pgvector", "HNSW"])
    vectors = np.array([item.embedding for item in response.data], dtype=np.float32)
    np.testing.assert_allclose(vectors, HashEmbedder().embed_documents(["pgvector", "HNSW"]), atol=1e-6)


def test_when_every_provider_is_down_the_error_says_which_and_why(client):
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="nowhere", messages=QUESTION)
    assert info.value.status_code == 502
    assert "every provider of model 'nowhere' failed" in info.value.message
    assert "cannot connect" in info.value.message
