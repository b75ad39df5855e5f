"""`/v1/embeddings` through the official OpenAI SDK: floats, base64, dimensions, usage, refused inputs."""

from __future__ import annotations

import base64
import os

import httpx
import numpy as np
import openai
import pytest

from kb.testing import HashEmbedder
from tests.helpers import ROOT
from tests.server.support import sdk

TEXTS = ["pgvector stores vectors in PostgreSQL", "HNSW indexes make search fast"]


@pytest.fixture
def hasher(app) -> HashEmbedder:
    embedder = HashEmbedder(dim=64, name="hash")
    app.state.registry.register_embedder(embedder)
    return embedder


@pytest.fixture
def client(hasher, live_server) -> openai.OpenAI:
    return sdk(live_server.url)


def test_float_vectors_are_the_models_vectors_with_usage(client, hasher):
    response = client.embeddings.create(model="hash", input=TEXTS, encoding_format="float")
    assert [item.index for item in response.data] == [0, 1]
    vectors = np.array([item.embedding for item in response.data], dtype=np.float32)
    np.testing.assert_allclose(vectors, hasher.embed_documents(TEXTS), rtol=1e-6)
    tokens = sum(hasher.count_tokens(t) for t in TEXTS)
    assert response.usage.prompt_tokens == response.usage.total_tokens == tokens
    assert response.model == "hash"


def test_base64_vectors_decode_to_the_same_floats(client, hasher, live_server):
    # The SDK asks for base64 by default and decodes it itself.
    decoded_by_sdk = np.array(
        client.embeddings.create(model="hash", input=TEXTS[0]).data[0].embedding, dtype=np.float32
    )
    np.testing.assert_array_equal(decoded_by_sdk, hasher.embed_documents(TEXTS[:1])[0])
    raw = httpx.post(
        f"{live_server.url}/v1/embeddings",
        json={"model": "hash", "input": TEXTS, "encoding_format": "base64"},
        headers=ROOT,
    ).json()
    decoded = np.stack([np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") for item in raw["data"]])
    np.testing.assert_array_equal(decoded, hasher.embed_documents(TEXTS))


def test_query_input_type_uses_the_query_side_of_the_model(live_server, hasher):
    raw = httpx.post(
        f"{live_server.url}/v1/embeddings",
        json={"model": "hash", "input": "what is pgvector", "encoding_format": "float", "input_type": "query"},
        headers=ROOT,
    ).json()
    np.testing.assert_allclose(raw["data"][0]["embedding"], hasher.embed_query("what is pgvector"), rtol=1e-6)


def test_other_dimensions_are_refused_naming_the_supported_one(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="hash", input="x", dimensions=32)
    assert info.value.code == "unsupported_dimensions"
    assert "64-dimensional" in info.value.message
    assert len(client.embeddings.create(model="hash", input="x", dimensions=64).data[0].embedding) == 64


def test_token_id_arrays_are_refused_as_not_supported(client):
    with pytest.raises(openai.BadRequestError, match="token-id arrays is not supported"):
        client.embeddings.create(model="hash", input=[1, 2, 3])
    with pytest.raises(openai.BadRequestError, match="token-id arrays is not supported"):
        client.embeddings.create(model="hash", input=[[1, 2], [3]])


def test_empty_input_and_unknown_model_are_refused(client):
    with pytest.raises(openai.BadRequestError, match="non-empty"):
        client.embeddings.create(model="hash", input=[])
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="nope", input="x")
    assert info.value.code == "model_not_found" and "hash" in info.value.message


@pytest.mark.slow
def test_the_bundled_minilm_embeds_through_the_gateway(client, app):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    response = client.embeddings.create(model="minilm", input=["a cat sits on the mat", "a kitten on a rug", "tax law"])
    vectors = np.array([item.embedding for item in response.data], dtype=np.float32)
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    embedder = app.state.registry.embedder("minilm")
    np.testing.assert_allclose(
        vectors, embedder.embed_documents(["a cat sits on the mat", "a kitten on a rug", "tax law"]), atol=1e-5
    )
    assert response.usage.prompt_tokens == sum(
        embedder.count_tokens(t) for t in ["a cat sits on the mat", "a kitten on a rug", "tax law"]
    )
