"""Switching a dataset to another embedding model is a background job: progress, cancel, and never two models' vectors."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kb.db.store import chunks as chunk_store
from kb.db.store.search import vector_search
from kb.ml.registry import ModelRegistry
from kb.runtime import Runtime
from kb.services import collections as collection_service
from kb.services import reembed as reembed_service
from kb.services.datasets import get_dataset
from kb.testing import EchoChatModel, HashEmbedder
from kb.worker.loop import Worker
from tests.helpers import ROOT

PARAGRAPHS = [f"Paragraph {n} is about lake number {n} and the fish living in it." for n in range(6)]


class WatchedEmbedder(HashEmbedder):
    """The fake embedder with a hook run before each batch (to look at, cancel or break a running job)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hook: Callable[[int], None] = lambda calls: None
        self.calls = 0

    def embed_documents(self, texts, batch_size: int = 32):
        self.calls += 1
        self.hook(self.calls)
        return super().embed_documents(texts, batch_size)


@pytest.fixture
def target() -> WatchedEmbedder:
    return WatchedEmbedder(dim=32, name="multi", max_tokens=128)


@pytest.fixture
def rt(pipeline_settings, db, target, monkeypatch) -> Runtime:
    monkeypatch.setattr(reembed_service, "SLICE", 2)  # 6 chunks: three progress steps
    registry = ModelRegistry(pipeline_settings)
    registry.register_embedder(HashEmbedder(dim=64, name="hash", max_tokens=128))
    registry.register_embedder(target)
    registry.register_chat(EchoChatModel())
    return Runtime(pipeline_settings, db, registry)


@pytest.fixture
def dataset_id(api, rt) -> int:
    created = api.post("/api/datasets", json={"name": "lakes", "chunk_settings": {"max_tokens": 16}}, headers=ROOT)
    collection_service.add_text(rt, created.json()["id"], name="lakes", text="\n\n".join(PARAGRAPHS))
    assert Worker(rt).run_until_idle() == 1
    return created.json()["id"]


def vectors_made_by(rt: Runtime, dataset_id: int, embedder: HashEmbedder) -> bool:
    """Whether every stored vector of the dataset is `embedder`'s vector of its chunk."""
    with rt.db.session() as session:
        texts = chunk_store.embedded_texts(session, dataset_id)
        return bool(texts) and all(
            vector_search(session, dataset_id, embedder.embed_query(q), limit=1).hits[0].score > 0.999
            for q in texts.values()
        )


def test_switching_model_runs_as_a_job_with_progress_and_swaps_model_dimension_and_vectors_at_once(
    api, rt, dataset_id, target
):
    seen = []
    target.hook = lambda calls: seen.append(api.get(f"/api/datasets/{dataset_id}/reembed", headers=ROOT).json())
    queued = api.post(f"/api/datasets/{dataset_id}/reembed", json={"embed_model": "multi"}, headers=ROOT)
    assert queued.status_code == 202, queued.text
    assert queued.json() | {"job_id": 0} == {
        "job_id": 0,
        "dataset_id": dataset_id,
        "status": "queued",
        "stage": "waiting",
        "percent": 0,
        "embed_model": "multi",
        "embed_variant": "hash-v1",
        "error": None,
    }
    again = api.post(f"/api/datasets/{dataset_id}/reembed", json={"embed_model": "multi"}, headers=ROOT)
    assert again.status_code == 409 and "already being re-embedded" in again.json()["error"]["message"]

    assert Worker(rt).run_until_idle() == 1
    assert [(s["status"], s["stage"], s["percent"]) for s in seen] == [
        ("running", "loading the model", 0),
        ("running", "embedding", 31),
        ("running", "embedding", 63),
    ]
    assert {"embed_model": "multi", "embed_dim": 32}.items() <= api.get(
        f"/api/datasets/{dataset_id}", headers=ROOT
    ).json().items()
    done = api.get(f"/api/datasets/{dataset_id}/reembed", headers=ROOT).json()
    assert (done["status"], done["stage"], done["percent"]) == ("done", "finished", 100)
    assert vectors_made_by(rt, dataset_id, target)
    found = api.post(
        f"/api/datasets/{dataset_id}/search", json={"query": PARAGRAPHS[4], "mode": "vector"}, headers=ROOT
    ).json()
    assert found["results"][0]["q"].endswith(PARAGRAPHS[4])


def test_a_cancelled_job_leaves_the_dataset_with_its_old_model_and_vectors(api, rt, dataset_id, target):
    old = rt.registry.embedder("hash")
    target.hook = lambda calls: calls == 2 and api.delete(f"/api/datasets/{dataset_id}/reembed", headers=ROOT)
    api.post(f"/api/datasets/{dataset_id}/reembed", json={"embed_model": "multi"}, headers=ROOT)
    Worker(rt).run_until_idle()

    state = api.get(f"/api/datasets/{dataset_id}/reembed", headers=ROOT).json()
    assert state["status"] == "cancelled" and "keeps its vectors" in state["error"]
    assert target.calls == 2, "the job stopped at its next step"
    dataset = get_dataset(rt, dataset_id)
    assert (dataset.embed_model, dataset.embed_dim) == ("hash", 64) and vectors_made_by(rt, dataset_id, old)

    waiting = api.post(f"/api/datasets/{dataset_id}/reembed", json={"embed_model": "multi"}, headers=ROOT).json()
    cancelled = api.delete(f"/api/datasets/{dataset_id}/reembed", headers=ROOT).json()
    assert (waiting["status"], cancelled["status"]) == ("queued", "cancelled")
    assert Worker(rt).run_until_idle() == 0 and target.calls == 2


def test_a_job_that_fails_midway_mixes_nothing_and_says_why(api, rt, dataset_id, target):
    def break_on_second_batch(calls: int) -> None:
        if calls == 2:
            raise MemoryError("out of memory")

    target.hook = break_on_second_batch
    api.post(f"/api/datasets/{dataset_id}/reembed", json={"embed_model": "multi"}, headers=ROOT)
    Worker(rt).run_until_idle()
    state = api.get(f"/api/datasets/{dataset_id}/reembed", headers=ROOT).json()
    assert state["status"] == "failed" and "internal error" in state["error"]
    assert get_dataset(rt, dataset_id).embed_model == "hash"
    assert vectors_made_by(rt, dataset_id, rt.registry.embedder("hash"))


def test_unknown_models_and_variants_are_refused_before_anything_is_queued(api, dataset_id):
    unknown = api.post(f"/api/datasets/{dataset_id}/reembed", json={"embed_model": "nope"}, headers=ROOT)
    assert unknown.status_code == 400 and "unknown embedding model 'nope'" in unknown.json()["error"]["message"]
    variant = api.post(f"/api/datasets/{dataset_id}/reembed", json={"embed_variant": "fp8"}, headers=ROOT)
    assert variant.status_code == 400 and "no variant 'fp8'" in variant.json()["error"]["message"]
    assert api.get(f"/api/datasets/{dataset_id}/reembed", headers=ROOT).status_code == 404
