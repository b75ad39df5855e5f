"""Chunks by hand: list a collection's chunks, add a manual Q/A pair, edit (re-embedded) and delete."""

from __future__ import annotations

from kb.db.store import chunks as chunk_store
from kb.db.store import collections as collection_store
from kb.db.store.chunks import ChunkRecord
from kb.errors import BadRequest, found, not_found
from kb.ml.types import Embedder
from kb.runtime import Runtime
from kb.schemas import ChunkCreate, ChunkUpdate
from kb.services.datasets import assert_embedder_current, dataset_embedder, dataset_record, token_cap

MANUAL_NAME = "Manual entries"
MANUAL_HASH = "manual"  # one manual collection per dataset: the (dataset, content hash) pair is unique


def _chunk(rt: Runtime, chunk_id: int) -> ChunkRecord:
    with rt.db.session() as session:
        return found(chunk_store.get_chunk(session, chunk_id), "chunk", chunk_id)


def _embed_question(embedder: Embedder, q: str) -> tuple[list[float], int]:
    """The vector of `q` and its token count; a text the embedder would truncate is refused."""
    tokens = embedder.count_tokens(q)
    if tokens > token_cap(embedder):
        raise BadRequest(
            f"The text is {tokens} tokens long but this dataset's embedding model reads at most {token_cap(embedder)}; "
            "shorten it or split it into several chunks.",
            code="chunk_too_long",
        )
    return embedder.embed_documents([q])[0], tokens


def list_chunks(
    rt: Runtime, collection_id: int, *, offset: int = 0, limit: int = 50, contains: str | None = None
) -> tuple[list[ChunkRecord], int]:
    """One page of a collection's chunks in document order (optionally only those containing `contains`)."""
    with rt.db.session() as session:
        if collection_store.get_collection(session, collection_id) is None:
            raise not_found("collection", collection_id)
        return chunk_store.list_chunks(session, collection_id, offset=offset, limit=limit, contains=contains or None)


def add_manual_chunk(rt: Runtime, dataset_id: int, data: ChunkCreate) -> ChunkRecord:
    """Add a hand-written Q/A pair to the dataset's "Manual entries" collection; searchable at once."""
    dataset = dataset_record(rt, dataset_id)
    embedder = dataset_embedder(rt, dataset)
    vector, tokens = _embed_question(embedder, data.q)
    with rt.db.session() as session:
        assert_embedder_current(session, dataset_id, embedder)
        collection, created = collection_store.add_collection(
            session,
            dataset_id=dataset_id,
            name=MANUAL_NAME,
            source_type="manual",
            content_hash=MANUAL_HASH,
            status="ready",
        )
        collection = collection_store.get_collection(session, collection.id, for_update=True)  # one position each
        (chunk_id,) = chunk_store.add_chunks(
            session,
            dataset_id,
            collection.id,
            [
                chunk_store.NewChunk(
                    q=data.q,
                    a=data.a,
                    embedding=vector,
                    kind="manual",
                    token_count=tokens,
                    position=chunk_store.next_position(session, collection.id),
                )
            ],
        )
        count = collection_store.refresh_chunk_count(session, collection.id)
        if created:
            collection_store.mark_ready(
                session, collection.id, chunk_count=count, stats={"mode": "manual"}, warnings=[]
            )
        session.commit()
        return chunk_store.get_chunk(session, chunk_id)  # type: ignore[return-value]


def update_chunk(rt: Runtime, chunk_id: int, data: ChunkUpdate) -> ChunkRecord:
    """Change a chunk's text and/or answer; the vector and full-text entry are rebuilt."""
    current = _chunk(rt, chunk_id)
    if current.kind == "source":
        raise BadRequest(
            "This passage is the source of generated Q/A pairs and is not searched itself; edit its pairs instead.",
            code="source_passage",
        )
    q = data.q if data.q is not None else current.q
    a = data.a if data.a is not None else current.a
    embedder = dataset_embedder(rt, dataset_record(rt, current.dataset_id))
    vector, tokens = _embed_question(embedder, q)
    with rt.db.session() as session:
        assert_embedder_current(session, current.dataset_id, embedder)
        record = found(
            chunk_store.update_chunk(session, chunk_id, q=q, a=a, embedding=vector, token_count=tokens),
            "chunk",
            chunk_id,
        )
        session.commit()
    return record


def delete_chunk(rt: Runtime, chunk_id: int) -> None:
    """Delete a chunk (a source passage takes its generated pairs with it)."""
    current = _chunk(rt, chunk_id)
    with rt.db.session() as session:
        chunk_store.delete_chunk(session, chunk_id)
        collection_store.refresh_chunk_count(session, current.collection_id)
        session.commit()
