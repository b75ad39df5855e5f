"""Datasets (knowledge bases) and their per-dataset vector indexes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from kb.db.store.chunks import reindex_fulltext
from kb.db.store.records import record_of
from kb.db.tables import Chunk, Collection, Dataset


@dataclass(frozen=True)
class DatasetRecord:
    id: int
    name: str
    description: str
    embed_model: str
    embed_dim: int
    embed_variant: str
    chunk_settings: dict[str, Any]
    search_settings: dict[str, Any]
    user_dictionary: list[str]
    created_at: datetime
    updated_at: datetime
    collection_count: int = 0
    chunk_count: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)


def _record(row: Dataset, **counts: Any) -> DatasetRecord:
    return record_of(DatasetRecord, row, **counts)


def vector_index_name(dataset_id: int) -> str:
    return f"ix_chunk_embedding_ds{int(dataset_id)}"


def ensure_vector_index(session: Session, dataset_id: int, dim: int) -> None:
    """The dataset's own HNSW (cosine) index, typed with its dimension and limited to its rows.

    Searches must use the same expression and predicate to use it:
    `(embedding::vector(dim)) <=> ...` with `WHERE dataset_id = <id>` (see kb.db.store.search).
    """
    dataset_id, dim = int(dataset_id), int(dim)
    session.execute(
        text(
            f"CREATE INDEX IF NOT EXISTS {vector_index_name(dataset_id)} ON chunk "
            f"USING hnsw ((embedding::vector({dim})) vector_cosine_ops) WHERE dataset_id = {dataset_id}"
        )
    )


def drop_vector_index(session: Session, dataset_id: int) -> None:
    session.execute(text(f"DROP INDEX IF EXISTS {vector_index_name(int(dataset_id))}"))


def add_dataset(
    session: Session,
    *,
    name: str,
    embed_model: str,
    embed_dim: int,
    embed_variant: str,
    description: str = "",
    chunk_settings: dict[str, Any] | None = None,
    search_settings: dict[str, Any] | None = None,
    user_dictionary: list[str] | None = None,
) -> DatasetRecord:
    row = Dataset(
        name=name,
        description=description,
        embed_model=embed_model,
        embed_dim=embed_dim,
        embed_variant=embed_variant,
        chunk_settings=chunk_settings or {},
        search_settings=search_settings or {},
        user_dictionary=user_dictionary or [],
    )
    session.add(row)
    session.flush()
    ensure_vector_index(session, row.id, embed_dim)
    session.refresh(row)
    return _record(row)


def get_dataset(session: Session, dataset_id: int) -> DatasetRecord | None:
    row = session.get(Dataset, dataset_id)
    return _record(row) if row else None


def lock_embedder(session: Session, dataset_id: int, *, exclusive: bool = False) -> tuple[str, str] | None:
    """The dataset's (embed_model, embed_variant), its row locked until the transaction ends.

    Writers of vectors take the shared lock and check the pair is still the one that made their
    vectors; a re-embed takes the exclusive lock, so the two never interleave.
    """
    mode = "UPDATE" if exclusive else "SHARE"
    row = session.execute(
        text(f"SELECT embed_model, embed_variant FROM dataset WHERE id = :id FOR {mode}"), {"id": int(dataset_id)}
    ).first()
    return (row.embed_model, row.embed_variant) if row else None


def get_dataset_by_name(session: Session, name: str) -> DatasetRecord | None:
    row = session.scalar(select(Dataset).where(Dataset.name == name))
    return _record(row) if row else None


def list_datasets(session: Session) -> list[DatasetRecord]:
    """Every dataset with its collection and (searchable) chunk counts."""
    collections = select(Collection.dataset_id, func.count().label("n")).group_by(Collection.dataset_id).subquery()
    chunks = (
        select(Chunk.dataset_id, func.count().label("n"))
        .where(Chunk.embedding.is_not(None))
        .group_by(Chunk.dataset_id)
        .subquery()
    )
    rows = session.execute(
        select(Dataset, func.coalesce(collections.c.n, 0), func.coalesce(chunks.c.n, 0))
        .outerjoin(collections, collections.c.dataset_id == Dataset.id)
        .outerjoin(chunks, chunks.c.dataset_id == Dataset.id)
        .order_by(Dataset.id)
    ).all()
    return [_record(row, collection_count=nc, chunk_count=nk) for row, nc, nk in rows]


def chunk_count(session: Session, dataset_id: int) -> int:
    """Searchable chunks of a dataset (source passages kept only for reference have no vector)."""
    query = select(func.count()).where(Chunk.dataset_id == dataset_id, Chunk.embedding.is_not(None))
    return int(session.scalar(query) or 0)


def update_dataset(session: Session, dataset_id: int, **values: Any) -> DatasetRecord | None:
    """Change a dataset's fields; a new user dictionary re-segments its chunks' full text in the same transaction."""
    row = session.get(Dataset, dataset_id)
    if row is None:
        return None
    dictionary_changed = "user_dictionary" in values and list(values["user_dictionary"] or []) != list(
        row.user_dictionary or []
    )
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = func.now()
    session.flush()
    if dictionary_changed:
        reindex_fulltext(session, dataset_id)
    session.refresh(row)
    return _record(row)


def delete_dataset(session: Session, dataset_id: int) -> bool:
    row = session.get(Dataset, dataset_id)
    if row is None:
        return False
    drop_vector_index(session, dataset_id)
    session.delete(row)
    session.flush()
    return True
