"""Evaluation in a real browser: upload the kit's questions as a set, run it from the admin and read the same
hit@1/hit@5 that `bench/retrieval.py` computes over the same dataset; compare a hybrid run with a vector run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from bench.retrieval import Question, run_modes
from kb.db.store import fulltext_stats
from kb.runtime import Runtime
from tests.browser_support import ARTIFACTS, log_in, screenshot
from tests.helpers import ROOT
from tests.pipeline.eval_support import kit_slice, wait_for_collections

pytestmark = pytest.mark.browser

RUN_TIMEOUT = 60_000


@pytest.fixture
def kit(live_server, app, shared_data, tmp_path: Path):
    """The kit slice ingested by the app's own worker, its questions as a JSONL file, and bench's figures."""
    with httpx.Client(base_url=live_server.url, headers=ROOT, timeout=30) as client:
        dataset_id, questions = kit_slice(client, shared_data)
        wait_for_collections(client, dataset_id)
    # The worker refreshes the BM25 statistics just after a collection is ready. Under load that refresh could land
    # between bench's figures and the admin's run (hit@5 0.833 against 0.867 in a CI run): settle them first.
    with app.state.db.session() as session:
        fulltext_stats.refresh(session, dataset_id)
        session.commit()
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(json.dumps(q) for q in questions) + "\n")
    rt = Runtime(app.state.settings, app.state.db, app.state.registry)
    asked = [Question(q["question"], q["answers"], q["doc"], 0) for q in questions]
    return dataset_id, path, run_modes(rt, dataset_id, asked, ("hybrid", "vector"))


def start_run(page, mode: str) -> None:
    page.select_option("[data-run-form] select[name=mode]", mode)
    page.click("[data-run-form] button[type=submit]")
    page.wait_for_url(re.compile(r".*/admin/eval-runs/\d+$"))
    expect(page.locator("[data-run-state] [data-status]")).to_have_attribute("data-status", "done", timeout=RUN_TIMEOUT)


def total(page, name: str) -> float:
    return float(page.locator(f"[data-total='{name}']").inner_text())


def upload_set(page, dataset_id: int, path: Path) -> None:
    page.goto(f"/admin/datasets/{dataset_id}/evals")
    page.fill("#set-name", "SQuAD kit")
    page.click("form[action$='/evals'] button[type=submit]")
    page.set_input_files("#eval-file", str(path))
    page.click("[data-upload-form] button[type=submit]")
    expect(page.locator("[data-report]")).to_contain_text("questions added")


def test_a_run_started_in_the_admin_shows_the_hit_rates_bench_retrieval_computes(page, kit):
    dataset_id, path, bench = kit
    log_in(page)
    upload_set(page, dataset_id, path)
    start_run(page, "hybrid")
    assert abs(total(page, "hit@1") - bench["hybrid"]["hit@1"]) <= 0.005
    assert abs(total(page, "hit@5") - bench["hybrid"]["hit@5"]) <= 0.005
    page.goto(f"/admin/datasets/{dataset_id}")
    expect(page.locator("[data-last-run]")).to_have_text(f"last run: hit@5 {bench['hybrid']['hit@5']:.2f}")


def test_the_comparison_page_shows_differences_and_the_questions_that_changed(page, kit):
    dataset_id, path, bench = kit
    log_in(page)
    upload_set(page, dataset_id, path)
    start_run(page, "vector")
    vector_url = page.url
    page.goto(f"/admin/datasets/{dataset_id}/evals")
    page.click("text=SQuAD kit")
    start_run(page, "hybrid")
    hybrid_id = page.url.rsplit("/", 1)[1]
    page.goto(vector_url)
    page.select_option("select[name=b]", hybrid_id)
    page.click("form[action$='/compare'] button[type=submit]")
    expected = bench["hybrid"]["hit@5"] - bench["vector"]["hit@5"]
    delta = float(page.locator("[data-measure='hit@5'] [data-delta]").inner_text())
    assert abs(delta - expected) <= 0.01
    better, worse = page.locator("[data-changed=better] details"), page.locator("[data-changed=worse] details")
    assert better.count() + worse.count() > 0
    first = (better if better.count() else worse).first
    expect(first.locator(".eval-quotes li").first).to_be_visible()
    expect(page.locator("figure.eval-chart svg polyline")).to_have_count(2)
    screenshot(page, "eval-compare")
    page.set_viewport_size({"width": 1280, "height": 1150})
    page.screenshot(path=str(ARTIFACTS / "eval-compare-top.png"))  # the README's picture
