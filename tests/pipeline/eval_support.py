"""A small slice of the SQuAD kit ingested through kb, and its questions, for the evaluation tests."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import ROOT
from tests.pipeline.support import create_dataset, upload, wait_until_done

KIT_DOCS = ("squad_Bern.md", "squad_Pub.md", "squad_Poultry.md")


def kit_slice(client, shared_data: Path, name: str = "squad") -> tuple[int, list[dict]]:
    """A dataset of three kit documents (processed by whatever worker runs) and the kit's questions about them."""
    kit = shared_data / "squad_dev_kit"
    dataset = create_dataset(client, name)
    response = upload(client, dataset["id"], *((doc, (kit / "docs" / doc).read_bytes()) for doc in KIT_DOCS))
    assert response.status_code in (200, 201, 202), response.text
    questions = [json.loads(line) for line in (kit / "questions.jsonl").read_text().splitlines() if line]
    return dataset["id"], [q for q in questions if q["doc"] in KIT_DOCS]


def wait_for_collections(client, dataset_id: int) -> None:
    for collection in client.get(f"/api/datasets/{dataset_id}/collections", headers=ROOT).json()["items"]:
        assert wait_until_done(client, collection["id"])["status"] == "ready"
