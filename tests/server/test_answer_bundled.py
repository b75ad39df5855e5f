"""The bundled models end to end: a small document ingested by the worker, answered by SmolLM2 with a citation."""

from __future__ import annotations

import os

import pytest

from kb.config import Settings
from kb.ml.registry import get_registry
from kb.runtime import Runtime
from kb.schemas import DatasetCreate
from kb.services.answering import AppQuestion, FinishedAnswer, ask_app
from kb.services.collections import add_text
from kb.services.datasets import create_dataset
from kb.worker.loop import Worker
from tests.answer_data import make_app
from tests.helpers import ROOT_KEY

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.slow

LIGHTHOUSE = """# The Harbour Lighthouse

The Harbour Lighthouse stands on the northern pier of Port Ellery. It was built in 1872 by the engineer Mary Hollis.

The lighthouse is 31 metres tall and its lamp can be seen from 40 kilometres away.

Since 1990 the building has been a museum about the history of the harbour.
"""


def test_smollm2_answers_an_english_question_from_an_ingested_document_and_cites_it(tmp_path, database_url, db):
    settings = Settings(
        _env_file=None, data_dir=tmp_path / "data", database_url=database_url, root_key=ROOT_KEY, torch_threads=2
    )
    rt = Runtime(settings, db, get_registry(settings))
    dataset = create_dataset(rt, DatasetCreate(name="harbour"))
    add_text(rt, dataset.id, name="lighthouse.md", text=LIGHTHOUSE)
    Worker(rt).run_until_idle()
    app = make_app(rt, "harbour", [dataset.id])

    items = list(ask_app(rt, app, AppQuestion("When was the Harbour Lighthouse built?", [])))
    answer = items[-1].answer if isinstance(items[-1], FinishedAnswer) else None

    assert answer is not None and not answer.not_found
    assert "1872" in answer.text, answer.text
    assert answer.cited == [1] and answer.text.endswith("[1]"), answer.text  # by the model or kb.rag.citations
    assert "1872" in answer.quotes[0].text and answer.quotes[0].source == "lighthouse.md"
    assert answer.timings.first_token_ms is not None and answer.usage.completion_tokens > 0
