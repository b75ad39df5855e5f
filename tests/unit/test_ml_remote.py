"""Remote OpenAI-compatible providers over real HTTP: failover, circuit breaker, broken streams, embeddings."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from kb.errors import BadRequest, UpstreamError
from kb.ml.remote import RemoteChatModel, RemoteEmbedder
from kb.ml.specs import ModelSpec
from kb.ml.types import Completion, GenerationParams, StreamDelta
from tests.remote_support import ANSWER_PIECES, FakeProvider, closed_port_url


@pytest.fixture
def servers() -> Iterator[list[FakeProvider]]:
    started = [FakeProvider(), FakeProvider()]
    yield started
    for server in started:
        server.close()


def spec(kind: str, *urls: str, **extra: object) -> ModelSpec:
    providers = [
        {"base_url": url, "api_key": f"key-{i}", "model": "upstream-m", "priority": i} for i, url in enumerate(urls)
    ]
    return ModelSpec(name="remote-m", kind=kind, backend="remote", providers=providers, timeout_seconds=5, **extra)


QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_stream_relays_pieces_and_upstream_usage(servers):
    model = RemoteChatModel(spec("chat", servers[0].base_url))
    items = list(model.stream(QUESTION, GenerationParams(temperature=0)))
    assert [i.text for i in items if isinstance(i, StreamDelta)] == ANSWER_PIECES
    completion = items[-1]
    assert completion == Completion("Paris is the capital of France.", 11, 7, "stop")
    sent = servers[0].requests[0]
    assert sent["model"] == "upstream-m" and sent["stream"] is True and sent["authorization"] == "Bearer key-0"


def test_a_down_provider_fails_over_to_the_next(servers):
    model = RemoteChatModel(spec("chat", closed_port_url(), servers[1].base_url))
    assert model.generate(QUESTION, GenerationParams()).text == "Paris is the capital of France."
    assert servers[1].hits == 1


@pytest.mark.parametrize("mode", ["error500", "busy429", "garbage"])
def test_failing_provider_is_skipped_after_repeated_failures(servers, mode):
    servers[0].mode = mode
    model = RemoteChatModel(
        spec("chat", servers[0].base_url, servers[1].base_url, failure_threshold=2, cooldown_seconds=60)
    )
    for _ in range(4):
        assert model.generate(QUESTION, GenerationParams()).text.startswith("Paris")
    assert servers[0].hits == 2, "a provider cooling down must not be asked again"
    assert servers[1].hits == 4


def test_provider_is_tried_again_after_its_cool_down(servers):
    servers[0].mode = "error500"
    model = RemoteChatModel(
        spec("chat", servers[0].base_url, servers[1].base_url, failure_threshold=1, cooldown_seconds=0)
    )
    servers[0].mode = "ok"
    model.pool.record_failure(model.pool.providers[0], "test")
    assert model.generate(QUESTION, GenerationParams()).text.startswith("Paris")
    assert servers[0].hits == 1 and servers[1].hits == 0


def test_all_providers_failing_is_an_upstream_error_naming_each(servers):
    servers[0].mode, servers[1].mode = "error500", "garbage"
    down = closed_port_url()
    model = RemoteChatModel(spec("chat", servers[0].base_url, servers[1].base_url, down))
    with pytest.raises(UpstreamError) as info:
        model.generate(QUESTION, GenerationParams())
    message = info.value.message
    assert "every provider of model 'remote-m' failed" in message
    assert (
        "HTTP 500: error500 here" in message
        and "text/html instead of an event stream" in message
        and "cannot connect" in message
    )
    assert servers[0].base_url in message and down in message
    assert info.value.status_code == 502


def test_a_stream_dropped_halfway_is_an_error_not_a_short_answer(servers):
    servers[0].mode = "drop"
    model = RemoteChatModel(spec("chat", servers[0].base_url))
    seen: list[str] = []
    with pytest.raises(UpstreamError, match="without finishing the answer|broke off"):
        for item in model.stream(QUESTION, GenerationParams()):
            seen.append(item.text)
    assert "".join(seen) == "Paris is the "


@pytest.mark.parametrize("mode", ["wrong_shape", "broken_sse", "role_then_drop"])
def test_a_provider_failing_before_any_answer_text_is_failed_over(servers, mode):
    servers[0].mode = mode
    model = RemoteChatModel(spec("chat", servers[0].base_url, servers[1].base_url))
    assert model.generate(QUESTION, GenerationParams()).text == "Paris is the capital of France."
    assert servers[0].hits == 1 and servers[1].hits == 1


def test_upstream_400_is_the_users_bad_request_and_no_failover(servers):
    servers[0].mode = "reject400"
    model = RemoteChatModel(spec("chat", servers[0].base_url, servers[1].base_url))
    with pytest.raises(BadRequest, match="rejected the request .*reject400 here"):
        model.generate(QUESTION, GenerationParams())
    assert servers[1].hits == 0


def test_stop_strings_are_applied_even_if_the_provider_ignores_them(servers):
    model = RemoteChatModel(spec("chat", servers[0].base_url))
    completion = model.generate(QUESTION, GenerationParams(stop=["capital"]))
    assert completion.text == "Paris is the " and completion.finish_reason == "stop"
    assert servers[0].requests[0]["stop"] == ["capital"]


def test_remote_embeddings_are_batched_ordered_and_normalised(servers):
    embedder = RemoteEmbedder(spec("embedding", closed_port_url(), servers[1].base_url, document_prefix="passage: "))
    vectors = embedder.embed_documents(["a", "bbb", "cc"], batch_size=2)
    assert vectors.shape == (3, 3) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    expected_first = np.array([len("passage: a"), 1.0, 0.0]) / np.linalg.norm([len("passage: a"), 1.0, 0.0])
    assert np.allclose(vectors[0], expected_first)
    assert [r["input"] for r in servers[1].requests] == [["passage: a", "passage: bbb"], ["passage: cc"]]
    assert embedder.dim == 3


def test_remote_embeddings_with_the_wrong_dimension_are_refused(servers):
    embedder = RemoteEmbedder(spec("embedding", servers[0].base_url, dim=768))
    with pytest.raises(UpstreamError, match="3-dimensional vectors, expected 768"):
        embedder.embed_query("x")
