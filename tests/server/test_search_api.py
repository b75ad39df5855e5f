"""`POST /api/datasets/{id}/search` and `kb search`: the same results as JSON, a table, or a clear error."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from kb.cli.main import app as cli
from kb.db.store import datasets as dataset_store
from tests.helpers import ROOT
from tests.server.search_support import DOCS, FakeModels, add_collection, add_texts


@pytest.fixture
def models():
    return FakeModels()


@pytest.fixture
def dataset_id(db, models) -> int:
    with db.session() as session:
        dataset = dataset_store.add_dataset(
            session, name="docs", embed_model="hash", embed_dim=64, embed_variant="hash-v1"
        )
        add_texts(session, dataset.id, add_collection(session, dataset.id, "docs.md"), DOCS, models.embedder())
        session.commit()
    return dataset.id


@pytest.fixture
def api(app, models):
    from fastapi.testclient import TestClient

    app.state.registry = models
    with TestClient(app) as client:
        yield client


def test_search_returns_quotes_with_scores_lists_and_timings(api, dataset_id):
    response = api.post(
        f"/api/datasets/{dataset_id}/search", json={"query": "Great Wall of China", "limit": 2}, headers=ROOT
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "hybrid" and body["warnings"] == []
    assert len(body["results"]) == 2
    top = body["results"][0]
    assert "Great Wall" in top["q"] and top["source"] == "docs.md"
    assert top["sources"] == ["vector", "fulltext"] and top["ranks"] == {"vector": 1, "fulltext": 1}
    assert 0 < top["score"] <= 1 and top["page"] is None
    assert {"chunk_id", "collection_id", "a", "heading", "scores"} <= top.keys()
    assert body["timings"]["total_ms"] > 0


def test_min_score_and_mode_are_applied(api, dataset_id):
    url = f"/api/datasets/{dataset_id}/search"
    loose = api.post(url, json={"query": "plants sunlight", "mode": "fulltext"}, headers=ROOT).json()["results"]
    strict = api.post(url, json={"query": "plants sunlight", "mode": "fulltext", "min_score": 0.99}, headers=ROOT)
    assert loose and all(r["sources"] == ["fulltext"] for r in loose)
    assert strict.status_code == 200 and strict.json()["results"] == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"query": ""}, "query is empty"),
        ({"query": "x", "limit": 0}, "limit must be between 1 and 100"),
        ({"query": "x", "limit": 101}, "limit must be between 1 and 100"),
        ({"query": "x", "mode": "semantic"}, "mode must be one of vector, fulltext, hybrid"),
        ({"query": "x", "min_score": -0.1}, "min_score must be between 0 and 1"),
        ({"query": "x", "limit": "many"}, "limit"),
        ({"query": "x", "top_k": 3}, "top_k"),
        ({"mode": "vector"}, "query: Field required"),
    ],
)
def test_bad_input_is_a_400_that_says_what_to_fix(api, dataset_id, body, message):
    response = api.post(f"/api/datasets/{dataset_id}/search", json=body, headers=ROOT)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]


def test_unknown_dataset_is_a_404_and_a_missing_key_a_401(api, dataset_id):
    missing = api.post(f"/api/datasets/{dataset_id + 50}/search", json={"query": "x"}, headers=ROOT)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "dataset_not_found"
    assert api.post(f"/api/datasets/{dataset_id}/search", json={"query": "x"}).status_code == 401


def test_cli_prints_a_table_and_json(settings, dataset_id, models):
    runner = CliRunner()
    env = {"KB_DATABASE_URL": settings.database_url, "KB_DATA_DIR": str(settings.data_dir), "KB_LOG_LEVEL": "WARNING"}
    obj = {"registry": models}
    table = runner.invoke(cli, ["search", "--dataset", "docs", "Great Wall of China"], env=env, obj=obj)
    assert table.exit_code == 0, table.output
    assert "Great Wall" in table.output and "fulltext #1" in table.output
    as_json = runner.invoke(
        cli, ["search", "-d", "docs", "--mode", "vector", "--json", "--limit", "1", "sugar"], env=env, obj=obj
    )
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout)
    assert body["mode"] == "vector" and len(body["results"]) == 1
    missing = runner.invoke(cli, ["search", "--dataset", "nope", "x"], env=env, obj=obj)
    assert missing.exit_code == 1 and "There is no dataset named 'nope'" in missing.output
