"""Evaluation sets and runs over the API, carried out by the worker: the figures are the ones
`bench/retrieval.py` computes over the same dataset, bad lines are refused by number, and runs can be
cancelled and compared."""

from __future__ import annotations

import json

import pytest

from bench.kit_ingest import ingest_kit
from bench.retrieval import Question, run_modes
from kb.worker.loop import Worker
from tests.helpers import ROOT
from tests.pipeline.eval_support import KIT_DOCS, kit_slice, wait_for_collections


@pytest.fixture
def squad(api, rt, shared_data):
    dataset_id, questions = kit_slice(api, shared_data)
    Worker(rt).run_until_idle()
    wait_for_collections(api, dataset_id)
    return dataset_id, questions


def _new_set(api, dataset_id: int, items: list[dict], name: str = "kit") -> dict:
    response = api.post(f"/api/datasets/{dataset_id}/evals", json={"name": name, "items": items}, headers=ROOT)
    assert response.status_code == 201, response.text
    return response.json()


def _run(api, rt, set_id: int, **config) -> dict:
    started = api.post(f"/api/evals/{set_id}/runs", json=config, headers=ROOT)
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "queued"
    Worker(rt).run_until_idle()
    return api.get(f"/api/eval-runs/{started.json()['id']}?results=true", headers=ROOT).json()


def test_a_run_gives_the_hit_rates_bench_retrieval_computes_on_a_dataset_it_builds_itself(api, rt, squad, shared_data):
    """bench/retrieval.py builds its own copy of the kit (`ingest_kit`); its figures must be the ones a run over
    the dataset a user uploaded gives, not just a rerun of the same search over the same rows."""
    dataset_id, questions = squad
    created = _new_set(api, dataset_id, questions)
    assert created["report"]["added"] == len(questions) and created["report"]["errors"] == []
    uploaded_with = api.get(f"/api/datasets/{dataset_id}", headers=ROOT).json()["chunk_settings"]["max_tokens"]
    bench_dataset = ingest_kit(
        rt, shared_data / "squad_dev_kit", docs=KIT_DOCS, max_tokens=uploaded_with, name="bench-squad"
    )
    bench = run_modes(
        rt, bench_dataset, [Question(q["question"], q["answers"], q["doc"], 0) for q in questions], ("hybrid", "vector")
    )
    for mode in ("hybrid", "vector"):
        run = _run(api, rt, created["id"], mode=mode)
        assert run["status"] == "done" and run["progress"] == 100
        totals = run["totals"]
        assert totals["items"] == totals["counted"] == len(questions)  # every kit answer is in a chunk
        assert abs(totals["hit@1"] - bench[mode]["hit@1"]) <= 0.005
        assert abs(totals["hit@5"] - bench[mode]["hit@5"]) <= 0.005
        assert 0 < totals["hit@5"] <= 1 and totals["source_hit@5"] is not None
        assert len(run["results"]) == len(questions)
        assert all(len(r["quotes"]) <= 5 for r in run["results"])


def test_bad_lines_are_refused_by_number_and_good_ones_kept(api, squad):
    dataset_id, questions = squad
    good = questions[0]
    created = _new_set(api, dataset_id, [], name="uploaded")
    body = "\n".join(
        [
            json.dumps({"question": good["question"], "answers": good["answers"][:1]}),
            '{"question": "What colour is the sky over Bern?"}',
            "not json",
            '{"question": "Who founded the moon colony?", "answers": ["Zorblax the Great"]}',
        ]
    )
    response = api.post(f"/api/evals/{created['id']}/items", files={"file": ("set.jsonl", body.encode())}, headers=ROOT)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["added"] == 2
    assert [(e["line"], "no expected answer" in e["message"]) for e in report["errors"]] == [(2, True), (3, False)]
    assert report["not_in_documents"] == [{"line": 4, "message": "this answer is not in any document"}]


def test_items_whose_answers_are_in_no_document_are_not_counted_as_misses(api, rt, squad):
    dataset_id, questions = squad
    items = [questions[0], {"question": "Who founded the moon colony?", "answers": ["Zorblax the Great"]}]
    created = _new_set(api, dataset_id, items)
    run = _run(api, rt, created["id"], mode="fulltext")
    assert run["totals"]["counted"] == 1 and run["totals"]["not_in_documents"] == 1
    flagged = [r for r in run["results"] if not r["in_corpus"]]
    assert [r["question"] for r in flagged] == ["Who founded the moon colony?"]


def test_a_cancelled_run_stops_and_comparing_two_runs_lists_changed_questions(api, rt, squad):
    dataset_id, questions = squad
    created = _new_set(api, dataset_id, questions)
    queued = api.post(f"/api/evals/{created['id']}/runs", json={"mode": "vector"}, headers=ROOT).json()
    cancelled = api.post(f"/api/eval-runs/{queued['id']}/cancel", headers=ROOT).json()
    assert cancelled["status"] == "cancelled"
    Worker(rt).run_until_idle()
    assert api.get(f"/api/eval-runs/{queued['id']}", headers=ROOT).json()["status"] == "cancelled"
    again = api.post(f"/api/eval-runs/{queued['id']}/cancel", headers=ROOT)
    assert again.status_code == 409
    vector = _run(api, rt, created["id"], mode="vector")
    hybrid = _run(api, rt, created["id"], mode="hybrid")
    comparison = api.get(f"/api/eval-runs/{vector['id']}/compare/{hybrid['id']}", headers=ROOT).json()
    hit5 = comparison["differences"]["hit@5"]
    assert hit5["delta"] == pytest.approx(hybrid["totals"]["hit@5"] - vector["totals"]["hit@5"], abs=1e-3)
    assert hit5["low"] <= hit5["delta"] <= hit5["high"]
    assert comparison["better"] or comparison["worse"]


def test_a_run_refuses_bad_settings_and_an_empty_set(api, squad):
    dataset_id, _ = squad
    created = _new_set(api, dataset_id, [], name="empty")
    assert api.post(f"/api/evals/{created['id']}/runs", json={}, headers=ROOT).status_code == 409
    bad = api.post(f"/api/evals/{created['id']}/runs", json={"mode": "psychic"}, headers=ROOT)
    assert bad.status_code == 400 and "mode" in bad.json()["error"]["message"]
    assert api.get("/api/eval-runs/999999", headers=ROOT).status_code == 404
