"""Search test data: a few documents in two languages, a stand-in registry, and rows written straight to the store."""

from __future__ import annotations

from kb.db.store import chunks as chunk_store
from kb.db.tables import Collection
from kb.testing import EchoChatModel, HashEmbedder

DOCS = [
    "PostgreSQL stores vectors with the pgvector extension and indexes them with HNSW graphs.",
    "The Great Wall of China is thousands of kilometres long and was built over many centuries.",
    "Photosynthesis lets green plants turn sunlight, water and carbon dioxide into sugar and oxygen.",
    "他在上海交通大学读书，学习计算机科学和人工智能。",
    "北京是中国的首都，也是全国的政治和文化中心。",
    "Volcanoes erupt when magma rises through cracks in the crust of the Earth.",
]


class FakeModels:
    """A registry stand-in serving the hash embedder and the echo chat model by any name."""

    def __init__(self, embedder=None, chat=None):
        self._embedder = embedder or HashEmbedder(dim=64)
        self._chat = chat or EchoChatModel()

    def embedder(self, name=None, variant=None):
        return self._embedder

    def chat(self, name=None):
        return self._chat

    def prepare_chat_file(self, name=None):
        """Nothing to assemble: the stand-ins are in memory."""


def add_collection(session, dataset_id: int, name: str, status: str = "ready") -> int:
    row = Collection(dataset_id=dataset_id, name=name, source_type="text", content_hash=name, status=status)
    session.add(row)
    session.flush()
    return row.id


def add_texts(
    session, dataset_id: int, collection_id: int, texts: list[str], embedder, kind: str = "chunk"
) -> list[int]:
    vectors = embedder.embed_documents(texts)
    return chunk_store.add_chunks(
        session,
        dataset_id,
        collection_id,
        [
            chunk_store.NewChunk(q=t, embedding=v, position=i, kind=kind, token_count=embedder.count_tokens(t))
            for i, (t, v) in enumerate(zip(texts, vectors))
        ],
    )
