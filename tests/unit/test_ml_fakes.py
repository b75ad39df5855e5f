"""The deterministic fakes in kb.testing behave like real models, so tests built on them mean something."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from kb.errors import BadRequest
from kb.ml.types import ChatModel, Completion, Embedder, GenerationCancelled, GenerationParams, StreamDelta
from kb.testing import EchoChatModel, HashEmbedder


def test_hash_embedder_is_deterministic_normalised_float32():
    embedder = HashEmbedder(dim=64)
    assert isinstance(embedder, Embedder)
    vectors = embedder.embed_documents(["PostgreSQL stores vectors", "", "长城"])
    assert vectors.shape == (3, 64) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert np.array_equal(vectors[0], HashEmbedder(dim=64).embed_query("PostgreSQL stores vectors"))


def test_hash_embedder_puts_similar_texts_closer_than_unrelated_ones():
    embedder = HashEmbedder()
    query = embedder.embed_query("how are vectors stored in postgres")
    near, far = embedder.embed_documents(["PostgreSQL stores vectors with pgvector", "The fox jumps over the dog"])
    assert query @ near > query @ far + 0.2


def test_echo_model_streams_pieces_that_add_up_to_the_completion():
    model = EchoChatModel()
    assert isinstance(model, ChatModel)
    items = list(model.stream([{"role": "user", "content": "what is kb"}], GenerationParams()))
    deltas, completion = items[:-1], items[-1]
    assert all(isinstance(d, StreamDelta) for d in deltas) and isinstance(completion, Completion)
    assert "".join(d.text for d in deltas) == completion.text == "Echo: what is kb"
    assert completion.completion_tokens == 4 and completion.finish_reason == "stop"
    assert completion.prompt_tokens == model.count_prompt_tokens([{"role": "user", "content": "what is kb"}])


def test_echo_model_honours_stop_and_max_tokens():
    model = EchoChatModel()
    messages = [{"role": "user", "content": "one two three four"}]
    assert model.generate(messages, GenerationParams(stop=["thr"])).text == "Echo: one two "
    limited = model.generate(messages, GenerationParams(max_tokens=2))
    assert limited.text == "Echo: one" and limited.finish_reason == "length" and limited.completion_tokens == 2


def test_echo_model_calls_a_tool_named_in_the_question():
    tools = [{"type": "function", "function": {"name": "search_kb", "parameters": {"type": "object"}}}]
    completion = EchoChatModel().generate(
        [{"role": "user", "content": "please search_kb for x"}], GenerationParams(tools=tools)
    )
    assert completion.finish_reason == "tool_calls" and completion.text == ""
    assert completion.tool_calls[0]["function"]["name"] == "search_kb"


def test_echo_model_rejects_prompts_longer_than_its_context():
    with pytest.raises(BadRequest, match="context of 8 tokens"):
        EchoChatModel(context_length=8).generate([{"role": "user", "content": "a b c d e f g"}], GenerationParams())


def test_echo_model_stops_when_cancelled():
    cancel = threading.Event()
    stream = EchoChatModel().stream([{"role": "user", "content": "a b c d"}], GenerationParams(), cancel)
    assert isinstance(next(stream), StreamDelta)
    cancel.set()
    with pytest.raises(GenerationCancelled):
        list(stream)


@pytest.mark.parametrize(
    "params", [GenerationParams(temperature=-1), GenerationParams(top_p=0), GenerationParams(max_tokens=0)]
)
def test_nonsense_sampling_settings_are_bad_requests(params):
    with pytest.raises(BadRequest):
        EchoChatModel().generate([{"role": "user", "content": "hi"}], params)
