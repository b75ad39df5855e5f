"""Chunks: the searchable pieces of a collection, with their vectors and full-text vectors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from kb.db.store import fulltext_stats, postings
from kb.db.store.records import record_of
from kb.db.tables import Chunk, Dataset
from kb.db.textsearch import TS_CONFIG, segment


@dataclass(frozen=True)
class NewChunk:
    """A chunk ready to be stored: its text, where it came from, and its embedding.

    A chunk without an embedding is kept for reference only (the source passage of generated Q/A
    pairs): it gets no full-text vector either, so neither kind of search returns it.
    """

    q: str
    embedding: Sequence[float] | None
    a: str = ""
    position: int = 0
    page: int | None = None
    heading: str = ""
    token_count: int = 0
    kind: str = "chunk"
    source_chunk_id: int | None = None


@dataclass(frozen=True)
class ChunkRecord:
    id: int
    dataset_id: int
    collection_id: int
    position: int
    kind: str
    q: str
    a: str
    page: int | None
    heading: str
    token_count: int
    source_chunk_id: int | None
    created_at: datetime
    updated_at: datetime


def _record(row: Chunk) -> ChunkRecord:
    return record_of(ChunkRecord, row)


def fts_source(q: str, a: str, heading: str, dictionary: Sequence[str] = ()) -> str:
    """What full-text search indexes for a chunk: its heading, text and answer, Chinese segmented."""
    return segment(" ".join(part for part in (heading, q, a) if part), dictionary)


def dataset_dictionary(session: Session, dataset_id: int) -> list[str]:
    """The dataset's user dictionary for jieba (domain words to keep whole)."""
    return list(session.scalar(select(Dataset.user_dictionary).where(Dataset.id == dataset_id)) or [])


def vector_literal(values: Sequence[float]) -> str:
    return "[" + ",".join(f"{float(v):.7g}" for v in values) + "]"


# One statement per batch: arrays in, rows out in the same order (ORDER BY the ordinality).
_INSERT_BATCH = text(
    f"""
    INSERT INTO chunk (dataset_id, collection_id, source_chunk_id, position, kind, q, a, page, heading,
                       token_count, embedding, fts)
    SELECT :dataset_id, :collection_id, u.src, u.pos, u.kind, u.q, u.a, u.page, u.heading, u.tc,
           CAST(u.emb AS vector), to_tsvector('{TS_CONFIG}', u.fts)
    FROM unnest(CAST(:src AS bigint[]), CAST(:pos AS int[]), CAST(:kind AS text[]), CAST(:q AS text[]),
                CAST(:a AS text[]), CAST(:page AS int[]), CAST(:heading AS text[]), CAST(:tc AS int[]),
                CAST(:emb AS text[]), CAST(:fts AS text[]))
         WITH ORDINALITY AS u(src, pos, kind, q, a, page, heading, tc, emb, fts, ord)
    ORDER BY u.ord
    RETURNING id
    """
)


def add_chunks(
    session: Session, dataset_id: int, collection_id: int, chunks: Sequence[NewChunk], *, batch_size: int = 500
) -> list[int]:
    """Insert chunks with their postings (in the caller's transaction) and return their ids in input order."""
    ids: list[int] = []
    dictionary = dataset_dictionary(session, dataset_id)
    for start in range(0, len(chunks), batch_size):
        batch = chunks[start : start + batch_size]
        params = {
            "dataset_id": dataset_id,
            "collection_id": collection_id,
            "src": [c.source_chunk_id for c in batch],
            "pos": [c.position for c in batch],
            "kind": [c.kind for c in batch],
            "q": [c.q for c in batch],
            "a": [c.a for c in batch],
            "page": [c.page for c in batch],
            "heading": [c.heading for c in batch],
            "tc": [c.token_count for c in batch],
            "emb": [None if c.embedding is None else vector_literal(c.embedding) for c in batch],
            "fts": [None if c.embedding is None else fts_source(c.q, c.a, c.heading, dictionary) for c in batch],
        }
        written = list(session.execute(_INSERT_BATCH, params).scalars())
        postings.append(session, dataset_id, written)
        ids.extend(written)
    return ids


def get_chunk(session: Session, chunk_id: int) -> ChunkRecord | None:
    row = session.get(Chunk, chunk_id)
    return _record(row) if row else None


def list_chunks(
    session: Session, collection_id: int, *, offset: int = 0, limit: int = 50, contains: str | None = None
) -> tuple[list[ChunkRecord], int]:
    """One page of a collection's chunks in order, optionally only those containing `contains`; and the total."""
    query = select(Chunk).where(Chunk.collection_id == collection_id)
    if contains:
        pattern = "%" + contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(Chunk.q.ilike(pattern) | Chunk.a.ilike(pattern))
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(query.order_by(Chunk.position, Chunk.id).offset(offset).limit(limit))
    return [_record(r) for r in rows], int(total or 0)


def update_chunk(
    session: Session, chunk_id: int, *, q: str, a: str, embedding: Sequence[float], token_count: int
) -> ChunkRecord | None:
    row = session.get(Chunk, chunk_id)
    if row is None:
        return None
    session.execute(
        text(
            f"UPDATE chunk SET q = :q, a = :a, token_count = :tc, embedding = CAST(:e AS vector), "
            f"fts = to_tsvector('{TS_CONFIG}', :fts), updated_at = now() WHERE id = :id"
        ),
        {
            "q": q,
            "a": a,
            "tc": token_count,
            "e": vector_literal(embedding),
            "fts": fts_source(q, a, row.heading, dataset_dictionary(session, row.dataset_id)),
            "id": chunk_id,
        },
    )
    postings.append(session, row.dataset_id, [chunk_id])  # the old postings stay until the next rebuild
    session.expire(row)
    return get_chunk(session, chunk_id)


def embedded_texts(session: Session, dataset_id: int) -> dict[int, str]:
    """id → text (`q`) of every chunk of the dataset that has a vector."""
    rows = session.execute(
        select(Chunk.id, Chunk.q).where(Chunk.dataset_id == dataset_id, Chunk.embedding.is_not(None))
    ).all()
    return {row.id: row.q for row in rows}


def set_embeddings(
    session: Session, ids: Sequence[int], vectors: Sequence[Sequence[float]], *, batch_size: int = 500
) -> None:
    """Replace the vectors of these chunks (same order), leaving everything else as it is."""
    statement = text(
        "UPDATE chunk SET embedding = CAST(u.emb AS vector) "
        "FROM unnest(CAST(:ids AS bigint[]), CAST(:emb AS text[])) AS u(id, emb) WHERE chunk.id = u.id"
    )
    for start in range(0, len(ids), batch_size):
        session.execute(
            statement,
            {
                "ids": [int(i) for i in ids[start : start + batch_size]],
                "emb": [vector_literal(v) for v in vectors[start : start + batch_size]],
            },
        )


def reindex_fulltext(session: Session, dataset_id: int, *, batch_size: int = 500) -> int:
    """Re-segment every searchable chunk of a dataset (after its user dictionary changed) and refresh its
    full-text statistics and postings; returns how many."""
    dictionary = dataset_dictionary(session, dataset_id)
    rows = session.execute(
        select(Chunk.id, Chunk.q, Chunk.a, Chunk.heading)
        .where(Chunk.dataset_id == dataset_id, Chunk.embedding.is_not(None))  # reference-only rows stay unsearchable
        .order_by(Chunk.id)
    ).all()
    statement = text(
        f"UPDATE chunk SET fts = to_tsvector('{TS_CONFIG}', u.fts) "
        "FROM unnest(CAST(:ids AS bigint[]), CAST(:fts AS text[])) AS u(id, fts) WHERE chunk.id = u.id"
    )
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        session.execute(
            statement,
            {"ids": [r.id for r in batch], "fts": [fts_source(r.q, r.a, r.heading, dictionary) for r in batch]},
        )
    fulltext_stats.refresh(session, dataset_id)
    return len(rows)


def delete_chunk(session: Session, chunk_id: int) -> bool:
    return session.execute(delete(Chunk).where(Chunk.id == chunk_id)).rowcount > 0


def delete_collection_chunks(session: Session, collection_id: int) -> int:
    return session.execute(delete(Chunk).where(Chunk.collection_id == collection_id)).rowcount


def next_position(session: Session, collection_id: int) -> int:
    current = session.scalar(select(func.max(Chunk.position)).where(Chunk.collection_id == collection_id))
    return 0 if current is None else current + 1
