"""A dataset whose embedding model cannot be loaded says so in searches and on its page; ingestion into it pauses,
and its stored vectors are kept."""

from __future__ import annotations

from fastapi.testclient import TestClient

from kb.db.store import chunks as chunk_store
from kb.http.app import create_app
from kb.ml.registry import ModelRegistry
from kb.runtime import Runtime
from kb.services import collections as collection_service
from kb.services.datasets import embedder_problem, get_dataset
from kb.testing import EchoChatModel, HashEmbedder
from kb.worker.loop import Worker
from tests.helpers import ROOT


def without_hash(settings) -> ModelRegistry:
    """What a later start sees when the dataset's model ('hash') is no longer configured."""
    registry = ModelRegistry(settings)
    registry.register_embedder(HashEmbedder(dim=64, name="other"))
    registry.register_chat(EchoChatModel())
    return registry


def test_search_page_and_ingestion_say_the_model_is_missing_and_keep_the_vectors(api, rt, pipeline_settings, db):
    dataset = api.post("/api/datasets", json={"name": "lakes"}, headers=ROOT).json()
    collection_service.add_text(rt, dataset["id"], name="fish", text="Perch and whitefish live in the lake.")
    Worker(rt).run_until_idle()
    with rt.db.session() as session:
        before = chunk_store.embedded_texts(session, dataset["id"])

    broken = Runtime(pipeline_settings, db, without_hash(pipeline_settings))
    with TestClient(create_app(broken.settings, db=db, registry=broken.registry)) as client:
        search = {"query": "Which fish live in the lake?"}
        refused = client.post(f"/api/datasets/{dataset['id']}/search", json=search | {"mode": "vector"}, headers=ROOT)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "embedder_unavailable"
        assert "cannot search by meaning" in refused.json()["error"]["message"]
        hybrid = client.post(f"/api/datasets/{dataset['id']}/search", json=search | {"mode": "hybrid"}, headers=ROOT)
        assert hybrid.status_code == 200 and "unknown embedding model 'hash'" in hybrid.json()["warnings"][0]
        assert hybrid.json()["results"][0]["q"].startswith("Perch"), "full text still answers"

        added = collection_service.add_text(broken, dataset["id"], name="birds", text="Swans nest on the shore.")
        Worker(broken).run_until_idle()
        paused = client.get(f"/api/collections/{added.collection.id}", headers=ROOT).json()
        assert paused["status"] == "queued" and paused["error"].startswith("Paused: Dataset 'lakes' cannot use")

    problem = embedder_problem(broken, get_dataset(broken, dataset["id"]))
    assert "unknown embedding model 'hash'" in problem and "stored vectors are kept" in problem
    assert embedder_problem(rt, get_dataset(rt, dataset["id"])) is None
    with rt.db.session() as session:
        assert chunk_store.embedded_texts(session, dataset["id"]) == before
