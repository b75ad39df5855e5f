"""A dataset keeps the embedder variant that made its vectors: queries use it, and switching means re-embedding."""

from __future__ import annotations

import numpy as np
import pytest

from kb.db.store import chunks as chunk_store
from kb.db.store.search import vector_search
from kb.ml.registry import ModelRegistry, UnknownVariant
from kb.runtime import Runtime
from kb.schemas import ChunkCreate, DatasetCreate
from kb.services import chunks as chunk_service
from kb.services import collections as collection_service
from kb.services.datasets import (
    EmbedderChanged,
    EmbedderUnavailable,
    assert_embedder_current,
    create_dataset,
    dataset_embedder,
    get_dataset,
)
from kb.services.ingest import ingest_collection
from kb.services.reembed import reembed_dataset
from kb.testing import EchoChatModel, HashEmbedder
from kb.worker.loop import Worker
from tests.helpers import ROOT

TEXT = (
    "Lake Geneva is the largest lake in the Alps.\n\n"
    "Perch and whitefish are the fish most often caught in the lake.\n\n"
    "Paddle steamers have crossed the lake since the nineteenth century.\n"
)
SMALL_CHUNKS = {"max_tokens": 16, "overlap": 0.0}  # one chunk per paragraph


def registry_with(settings, *variants: str) -> ModelRegistry:
    """A registry serving the fake model "hash" in these variants, the first being its default."""
    registry = ModelRegistry(settings)
    for variant in variants:
        registry.register_embedder(HashEmbedder(dim=64, max_tokens=128, variant=variant))
    registry.register_chat(EchoChatModel())
    return registry


@pytest.fixture
def rt(pipeline_settings, db) -> Runtime:
    return Runtime(pipeline_settings, db, registry_with(pipeline_settings, "old", "new"))


def ingest_text(rt: Runtime, dataset_id: int, **kwargs) -> int:
    outcome = collection_service.add_text(rt, dataset_id, name="lakes", text=TEXT)
    ingest_collection(rt, outcome.collection.id, **kwargs)
    return outcome.collection.id


def best_match(rt: Runtime, dataset_id: int, query_vector) -> tuple[str, float]:
    with rt.db.session() as session:
        hit = vector_search(session, dataset_id, query_vector, limit=1).hits[0]
    return hit.q, hit.score


def stored_vectors_match(rt: Runtime, dataset_id: int, variant: str) -> bool:
    """Whether every stored vector is the `variant` embedding of its chunk's text."""
    embedder = rt.registry.embedder("hash", variant=variant)
    with rt.db.session() as session:
        texts = chunk_store.embedded_texts(session, dataset_id)
        for _chunk_id, q in texts.items():
            with_vector = embedder.embed_documents([q])[0]
            _, score = best_match(rt, dataset_id, with_vector)
            if score < 0.999:
                return False
    return bool(texts)


def test_queries_use_the_variant_recorded_for_the_dataset_even_after_the_default_changed(rt, pipeline_settings, db):
    dataset = create_dataset(rt, DatasetCreate(name="lakes", chunk_settings=SMALL_CHUNKS))
    assert dataset.embed_variant == "old"
    ingest_text(rt, dataset.id)
    question = "Which fish are caught in the lake?"

    upgraded = Runtime(pipeline_settings, db, registry_with(pipeline_settings, "new", "old"))  # a new default
    assert upgraded.registry.embedder("hash").variant == "new"
    embedder = dataset_embedder(upgraded, get_dataset(upgraded, dataset.id))
    assert embedder.variant == "old"
    text, score = best_match(upgraded, dataset.id, embedder.embed_query(question))
    assert text.startswith("Perch") and score > 0.5
    _, mixed = best_match(upgraded, dataset.id, upgraded.registry.embedder("hash").embed_query(question))
    assert mixed < score - 0.3, "a query from another variant does not match the stored vectors"

    without_old = Runtime(pipeline_settings, db, registry_with(pipeline_settings, "new"))
    with pytest.raises(EmbedderUnavailable, match="no variant 'old'") as missing:
        dataset_embedder(without_old, get_dataset(without_old, dataset.id))
    assert isinstance(missing.value.__cause__, UnknownVariant) and "vectors are kept" in missing.value.message


def test_changing_a_datasets_variant_in_place_is_refused_and_a_reembed_switches_every_vector_with_it(api, rt):
    created = api.post("/api/datasets", json={"name": "lakes", "chunk_settings": SMALL_CHUNKS}, headers=ROOT).json()
    ingest_text(rt, created["id"])
    assert stored_vectors_match(rt, created["id"], "old")

    refused = api.patch(f"/api/datasets/{created['id']}", json={"embed_variant": "new"}, headers=ROOT)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "embed_variant_fixed"
    assert "/reembed" in refused.json()["error"]["message"]
    assert get_dataset(rt, created["id"]).embed_variant == "old"
    same = api.patch(f"/api/datasets/{created['id']}", json={"embed_variant": "old", "description": "d"}, headers=ROOT)
    assert same.status_code == 200

    queued = api.post(f"/api/datasets/{created['id']}/reembed", json={"embed_variant": "new"}, headers=ROOT)
    assert queued.status_code == 202, queued.text
    Worker(rt).run_until_idle()  # the re-embedding (and the ingestion job `ingest_text` ran by hand, again)
    switched = api.get(f"/api/datasets/{created['id']}", headers=ROOT).json()
    assert switched["embed_variant"] == "new" and switched["chunk_count"] == 3
    assert stored_vectors_match(rt, created["id"], "new") and not stored_vectors_match(rt, created["id"], "old")
    unknown = api.post(f"/api/datasets/{created['id']}/reembed", json={"embed_variant": "int4"}, headers=ROOT)
    assert unknown.status_code == 400 and get_dataset(rt, created["id"]).embed_variant == "new"


def test_an_ingestion_that_embedded_with_the_old_variant_is_not_stored_after_a_reembed_and_its_retry_is(rt):
    dataset = create_dataset(rt, DatasetCreate(name="lakes", chunk_settings=SMALL_CHUNKS))
    chunk_service.add_manual_chunk(rt, dataset.id, ChunkCreate(q="A manual note about lakes", a="answer"))

    def reembed_midway(stage: str, done: int, total: int) -> None:
        if stage == "embedding" and get_dataset(rt, dataset.id).embed_variant == "old":
            reembed_dataset(rt, dataset.id, embed_variant="new")

    with pytest.raises(EmbedderChanged):
        ingest_text(rt, dataset.id, progress=reembed_midway)
    assert get_dataset(rt, dataset.id).chunk_count == 1, "nothing from the old variant was written"
    collection_id = next(c.id for c in collection_service.list_collections(rt, dataset.id)[0] if c.name == "lakes")
    assert ingest_collection(rt, collection_id).status == "ready"
    assert stored_vectors_match(rt, dataset.id, "new")


def test_a_chunk_added_while_a_reembed_runs_is_reembedded_too(rt):
    dataset = create_dataset(rt, DatasetCreate(name="lakes", chunk_settings=SMALL_CHUNKS))
    ingest_text(rt, dataset.id)
    added = []

    def add_meanwhile(stage: str, percent: int) -> None:
        if stage == "embedding":
            added.append(chunk_service.add_manual_chunk(rt, dataset.id, ChunkCreate(q="Swans nest on the shore", a="")))

    reembed_dataset(rt, dataset.id, embed_variant="new", progress=add_meanwhile)
    assert len(added) == 1 and get_dataset(rt, dataset.id).chunk_count == 4
    assert stored_vectors_match(rt, dataset.id, "new")
    swan = rt.registry.embedder("hash", variant="new").embed_query("Swans nest on the shore")
    assert best_match(rt, dataset.id, swan) == ("Swans nest on the shore", pytest.approx(1.0, abs=1e-5))


def test_a_vector_writer_holding_the_old_variant_is_stopped_with_a_retryable_error(rt):
    dataset = create_dataset(rt, DatasetCreate(name="lakes", chunk_settings=SMALL_CHUNKS))
    old = dataset_embedder(rt, dataset)
    reembed_dataset(rt, dataset.id, embed_variant="new")
    with rt.db.session() as session:
        with pytest.raises(EmbedderChanged) as stopped:
            assert_embedder_current(session, dataset.id, old)
        assert_embedder_current(session, dataset.id, rt.registry.embedder("hash", variant="new"))
    assert stopped.value.status_code == 503 and "re-embedded" in stopped.value.message
    assert np.allclose(np.linalg.norm(old.embed_query("x")), 1.0)
