"""Hybrid search with the bundled all-MiniLM-L6-v2 on real English and Chinese paragraphs."""

from __future__ import annotations

import json

import pytest

from kb.db.store import datasets as dataset_store
from kb.ml.registry import get_registry
from kb.rag.retrieval import DENSE_WEIGHT, dense_weight
from kb.runtime import Runtime
from kb.services.search import search_datasets, vocabulary_coverage
from tests.server.search_support import add_collection, add_texts

pytestmark = pytest.mark.slow


def kit_sample(shared_data, kit: str, docs: int) -> tuple[list[str], list[dict]]:
    """The first paragraphs of the first `docs` documents of a kit, and the questions about them."""
    paragraphs, names = [], []
    for path in sorted((shared_data / kit / "docs").glob("*.md"))[:docs]:
        blocks = [b.strip() for b in path.read_text(encoding="utf-8").split("\n\n") if b.strip()]
        paragraphs.append(blocks[1])
        names.append(path.name)
    lines = (shared_data / kit / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    questions = [q for q in map(json.loads, lines) if q["doc"] in names and q["paragraph_index"] == 0]
    return paragraphs, questions


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    from kb.config import Settings

    return get_registry(Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("data"))).embedder("minilm")


def test_minilm_reads_english_fully_and_most_of_chinese_as_unknown(minilm):
    assert vocabulary_coverage(minilm, "Who was the Trojan priest of Apollo?") == 1.0
    chinese = vocabulary_coverage(minilm, "乍都节公园是由谁捐献土地建造出来的？")
    assert chinese < 0.6
    assert dense_weight(chinese) < DENSE_WEIGHT / 2


def test_hybrid_with_minilm_finds_the_paragraph_in_english_and_in_chinese(db, settings, minilm, shared_data):
    with db.session() as session:
        dataset = dataset_store.add_dataset(
            session, name="kits", embed_model="minilm", embed_dim=minilm.dim, embed_variant=minilm.variant
        )
        collection = add_collection(session, dataset.id, "kits")
        questions = []
        for kit in ("squad_dev_kit", "cmrc_dev_kit"):
            paragraphs, asked = kit_sample(shared_data, kit, 8)
            add_texts(session, dataset.id, collection, paragraphs, minilm)
            questions += asked
        session.commit()
    deps = Runtime(settings, db, get_registry(settings))
    assert len(questions) >= 8
    found = 0
    for question in questions:
        quotes = search_datasets(deps, [dataset.id], question["question"], mode="hybrid", limit=3).quotes
        found += any(any(answer in q.text for answer in question["answers"]) for q in quotes)
    assert found / len(questions) >= 0.9
