"""The bundled MiniLM in every variant: shape and norm, closeness to fp32 on real text, the ONNX cache built once."""

from __future__ import annotations

import os

import numpy as np
import pytest

from kb.config import Settings
from kb.ml import registry as registry_module
from kb.ml.onnx_embed import onnx_cache_folder
from kb.ml.registry import ModelRegistry
from kb.ml.specs import EMBED_VARIANTS, load_specs, package_path
from kb.ml.tokens import RustTokenizer
from tests.shared_data import require_shared_data

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> ModelRegistry:
    settings = Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("variants"), torch_threads=2)
    return ModelRegistry(settings)


@pytest.fixture(scope="module")
def paragraphs() -> list[str]:
    """Real paragraphs of three articles, short and long (some beyond the model's 256-token window)."""
    docs = require_shared_data("squad_dev_kit", "docs")
    texts: list[str] = []
    for path in sorted(docs.glob("*.md"))[:3]:
        texts += [block.strip() for block in path.read_text(encoding="utf-8").split("\n\n")[1:9] if block.strip()]
    return texts


@pytest.mark.parametrize("variant", EMBED_VARIANTS)
def test_each_variant_gives_normalised_384_dimensional_vectors_that_rank_the_right_text_first(registry, variant):
    embedder = registry.embedder("minilm", variant=variant)
    assert (embedder.name, embedder.variant, embedder.dim, embedder.max_tokens) == ("minilm", variant, 384, 256)
    documents = embedder.embed_documents(
        ["PostgreSQL stores vectors with the pgvector extension.", "The fox jumps over the lazy dog."], batch_size=1
    )
    assert documents.shape == (2, 384) and documents.dtype == np.float32
    assert np.allclose(np.linalg.norm(documents, axis=1), 1.0, atol=1e-5)
    query = embedder.embed_query("Which extension stores vectors in Postgres?")
    assert query.shape == (384,) and abs(float(np.linalg.norm(query)) - 1.0) < 1e-5
    assert query @ documents[0] > query @ documents[1] + 0.3
    assert embedder.count_tokens("hello world") == 2


def test_the_fp32_variant_gives_what_plain_sentence_transformers_gives(registry, paragraphs):
    embedder = registry.embedder("minilm", variant="fp32")
    plain = embedder.model.encode(paragraphs, batch_size=32, normalize_embeddings=True)
    ours = embedder.embed_documents(paragraphs, batch_size=7)
    assert np.abs(ours - plain).max() < 1e-5


@pytest.mark.parametrize("variant", ["bf16", "onnx-fp32", "onnx-int8"])
def test_faster_variants_stay_close_to_fp32_on_real_paragraphs(registry, paragraphs, variant):
    reference = registry.embedder("minilm", variant="fp32").embed_documents(paragraphs)
    vectors = registry.embedder("minilm", variant=variant).embed_documents(paragraphs)
    cosine = (vectors * reference).sum(axis=1)
    floor = {"bf16": 0.998, "onnx-fp32": 0.9999, "onnx-int8": 0.98}[variant]
    assert cosine.mean() > floor + (1 - floor) / 2 and cosine.min() > floor, (cosine.mean(), cosine.min())


def test_the_default_int8_embedder_gives_a_text_the_same_vector_whatever_it_is_embedded_with(registry, paragraphs):
    """Dynamic int8 quantises a whole batch with one scale; batched, a text's vector moved with its neighbours,
    so a chunk ingested, re-embedded or edited got slightly different vectors, and bench/retrieval.py (one call
    for the whole kit) disagreed with an upload (one call per document) on 1-2% of top-1 results."""
    embedder = registry.embedder("e5-small")
    assert embedder.variant == "onnx-int8"
    together = embedder.embed_documents(paragraphs, batch_size=32)
    alone = np.stack([embedder.embed_documents([text])[0] for text in paragraphs])
    assert np.array_equal(together, alone)


def test_onnx_variants_are_built_into_the_cache_once_then_loaded_from_it(tmp_path):
    # Its own cache: the suite's shared one (KB_MODEL_CACHE) already holds these variants.
    settings = Settings(_env_file=None, data_dir=tmp_path, model_cache=tmp_path / "cache", torch_threads=2)
    spec = next(s for s in load_specs(None) if s.name == "minilm")
    source = str(package_path(spec.path).resolve())
    folders = {v: onnx_cache_folder(spec, source, v, settings.model_cache_dir) for v in ("onnx-fp32", "onnx-int8")}
    registry_module._loaded.clear()
    first = ModelRegistry(settings).embedder("minilm", variant="onnx-int8")
    assert all((folder / "embedder.json").exists() for folder in folders.values()), "int8 is quantised from fp32"
    assert not [p for p in folders["onnx-int8"].parent.iterdir() if p.name.startswith(".")], "staging left behind"
    stamps = {v: (folder / "model.onnx").stat().st_mtime_ns for v, folder in folders.items()}
    vector = first.embed_query("cached once")

    registry_module._loaded.clear()  # as a new process would
    second = ModelRegistry(settings).embedder("minilm", variant="onnx-int8")
    assert second is not first
    assert isinstance(first.tokenizer, RustTokenizer) and isinstance(second.tokenizer, RustTokenizer), (
        "a built variant loads its tokenizer without transformers"
    )
    assert {v: (folder / "model.onnx").stat().st_mtime_ns for v, folder in folders.items()} == stamps, "rebuilt"
    assert np.array_equal(second.embed_query("cached once"), vector)
