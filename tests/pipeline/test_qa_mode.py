"""QA mode: each chunk goes to the chat model; pairs become searchable Q/A chunks, misses are kept and reported."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import text

from kb.errors import UpstreamError
from kb.http.app import create_app
from kb.ingest.qagen import NO_PAIRS
from kb.ml.types import Completion
from kb.runtime import Runtime
from kb.schemas import DatasetCreate
from kb.services import collections as collection_service
from kb.services import datasets as dataset_service
from kb.testing import EchoChatModel
from kb.worker.loop import Worker
from tests.helpers import ROOT
from tests.pipeline.support import MARKDOWN, create_dataset, fake_registry, upload

REPLIES = {
    "Geneva": "Q1: Which is the largest lake in the Alps?\nA1: Lake Geneva.\nQ2: How is its water?\nA2: Deep and cold all year.",
    "steamers": "Here are some pairs:\n\nQ1: What has crossed the lake since the nineteenth century?\nA1: Paddle steamers.",
}


class ScriptedQAChat(EchoChatModel):
    """Answers QA prompts like a small model would: pairs for some passages, chatter for others."""

    def generate(self, messages, params, cancel=None):
        passage = messages[-1]["content"]
        reply = next((r for key, r in REPLIES.items() if key in passage), "Sorry, I have no questions about this.")
        self.calls.append(messages)
        return Completion(reply, prompt_tokens=50, completion_tokens=20, finish_reason="stop")


def test_qa_mode_stores_pairs_linked_to_their_source_and_reports_chunks_without_pairs(pipeline_settings, db):
    chat = ScriptedQAChat()
    registry = fake_registry(pipeline_settings, chat=chat)
    rt = Runtime(pipeline_settings, db, registry)
    with TestClient(create_app(pipeline_settings, db=db, registry=registry)) as client:
        dataset = create_dataset(client)
        collection_id = upload(client, dataset["id"], ("lakes.md", MARKDOWN), mode="qa").json()["id"]
        Worker(rt).run_until_idle()
        done = client.get(f"/api/collections/{collection_id}", headers=ROOT).json()
        chunks = client.get(f"/api/collections/{collection_id}/chunks", headers=ROOT).json()["items"]

    assert len(chat.calls) == 3, "one request per chunk"
    assert done["status"] == "ready" and done["mode"] == "qa"
    assert done["chunk_count"] == 4, "three pairs plus the chunk that gave none"
    qa = done["stats"]["qa"]
    assert (qa["source_chunks"], qa["qa_pairs"], qa["chunks_with_pairs"], qa["chunks_without_pairs"]) == (3, 3, 2, 1)
    assert qa["no_pair_reasons"] == {NO_PAIRS: 1} and qa["chat_model"] == "echo"
    assert any("1 of 3 chunks gave no question/answer pairs" in w for w in done["warnings"])

    assert [c["kind"] for c in chunks] == ["source", "qa", "qa", "chunk", "source", "qa"]
    sources = {c["id"]: c for c in chunks if c["kind"] == "source"}
    pairs = [c for c in chunks if c["kind"] == "qa"]
    assert pairs[0]["q"] == "Which is the largest lake in the Alps?" and pairs[0]["a"] == "Lake Geneva."
    assert "Geneva" in sources[pairs[0]["source_chunk_id"]]["q"]
    assert "steamers" in sources[pairs[2]["source_chunk_id"]]["q"]
    assert "whitefish" in next(c for c in chunks if c["kind"] == "chunk")["q"], (
        "the chunk without pairs stays searchable"
    )

    with rt.db.session() as session:
        searchable = dict(
            session.execute(
                text("SELECT kind, bool_and(embedding IS NOT NULL AND fts IS NOT NULL) FROM chunk GROUP BY kind")
            ).all()
        )
        hidden = session.execute(
            text("SELECT bool_and(embedding IS NULL AND fts IS NULL) FROM chunk WHERE kind = 'source'")
        ).scalar()
    assert searchable["qa"] and searchable["chunk"] and hidden, "source passages are kept for reference, not searched"


def test_a_chat_model_failing_on_every_chunk_leaves_them_all_as_plain_chunks_with_the_reason(pipeline_settings, db):
    class Refusing(EchoChatModel):
        def generate(self, messages, params, cancel=None):
            raise UpstreamError("The chat provider answered 500.")

    rt = Runtime(pipeline_settings, db, fake_registry(pipeline_settings, chat=Refusing()))
    dataset = dataset_service.create_dataset(rt, DatasetCreate(name="d"))
    outcome = collection_service.add_text(rt, dataset.id, name="lakes.md", text=MARKDOWN.decode(), mode="qa")
    Worker(rt).run_until_idle()
    collection = collection_service.get_collection(rt, outcome.collection.id).collection
    assert collection.status == "ready" and collection.chunk_count == 3
    assert collection.stats["qa"]["no_pair_reasons"] == {"the chat model refused: The chat provider answered 500.": 3}
    assert "3 of 3 chunks" in collection.warnings[0]
