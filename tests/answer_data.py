"""Small knowledge bases for answering tests: ready collections with HashEmbedder vectors, and fake models."""

from __future__ import annotations

from dataclasses import dataclass

from kb.db.store import chunks as chunk_store
from kb.db.store import collections as collection_store
from kb.db.store import datasets as dataset_store
from kb.db.store.apps import AppRecord
from kb.runtime import Runtime
from kb.services.apps import AppCreate, create_app_record
from kb.testing import HashEmbedder, ScriptedChatModel

PARIS = {
    "paris.md": [
        "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris.",
        "The Eiffel Tower was built from 1887 to 1889 as the entrance to the 1889 World's Fair.",
        "The Louvre is the world's most-visited museum and a historic landmark in Paris.",
    ]
}
TOKYO = {"tokyo.md": ["Tokyo Tower is a communications tower in the Minato district of Tokyo, completed in 1958."]}


@dataclass
class Models:
    chat: ScriptedChatModel
    embedder: HashEmbedder


def use_models(rt: Runtime, replies) -> Models:
    """Serve a scripted chat model as the default chat model and a hash embedder as 'hash'."""
    models = Models(ScriptedChatModel(replies, name=rt.settings.chat_model), HashEmbedder(name="hash"))
    rt.registry.register_chat(models.chat)
    rt.registry.register_embedder(models.embedder)
    return models


def add_knowledge(rt: Runtime, name: str, documents: dict[str, list[str]]) -> int:
    """A dataset of ready collections, one chunk per paragraph, embedded with the 'hash' embedder."""
    embedder = rt.registry.embedder("hash")
    with rt.db.session() as session:
        dataset = dataset_store.add_dataset(
            session, name=name, embed_model="hash", embed_dim=embedder.dim, embed_variant=embedder.variant
        )
        for document, paragraphs in documents.items():
            collection, _ = collection_store.add_collection(
                session, dataset_id=dataset.id, name=document, source_type="text", content_hash=document, status="ready"
            )
            vectors = embedder.embed_documents(paragraphs)
            chunk_store.add_chunks(
                session,
                dataset.id,
                collection.id,
                [
                    chunk_store.NewChunk(q=text, embedding=vector, position=i, page=1)
                    for i, (text, vector) in enumerate(zip(paragraphs, vectors))
                ],
            )
        session.commit()
    return dataset.id


def make_app(rt: Runtime, name: str, dataset_ids: list[int], **fields) -> AppRecord:
    return create_app_record(rt, AppCreate(name=name, dataset_ids=dataset_ids, **fields))
