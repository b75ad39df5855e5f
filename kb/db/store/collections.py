"""Collections: the sources inside a dataset (a file, a pasted text, a link) and their processing state."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import cast, delete, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Session

from kb.db.store.records import record_of
from kb.db.tables import Chunk, Collection

STATUSES = ("queued", "parsing", "chunking", "embedding", "ready", "error")
BUSY_STATUSES = ("parsing", "chunking", "embedding")


@dataclass(frozen=True)
class CollectionRecord:
    id: int
    dataset_id: int
    name: str
    source_type: str
    source_uri: str | None
    file_path: str | None
    content_hash: str
    content_type: str | None
    size_bytes: int
    mode: str
    status: str
    progress: int
    error: str | None
    chunk_count: int
    stats: dict[str, Any]
    warnings: list[str]
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _record(row: Collection) -> CollectionRecord:
    return record_of(CollectionRecord, row)


def add_collection(
    session: Session,
    *,
    dataset_id: int,
    name: str,
    source_type: str,
    content_hash: str,
    source_uri: str | None = None,
    file_path: str | None = None,
    content_type: str | None = None,
    size_bytes: int = 0,
    mode: str = "chunk",
    status: str = "queued",
) -> tuple[CollectionRecord, bool]:
    """Insert a collection unless the dataset already holds this content; returns (record, created)."""
    statement = (
        insert(Collection)
        .values(
            dataset_id=dataset_id,
            name=name,
            source_type=source_type,
            content_hash=content_hash,
            source_uri=source_uri,
            file_path=file_path,
            content_type=content_type,
            size_bytes=size_bytes,
            mode=mode,
            status=status,
        )
        .on_conflict_do_nothing(constraint="uq_collection_dataset_hash")
        .returning(Collection.id)
    )
    new_id = session.execute(statement).scalar()
    if new_id is not None:
        return get_collection(session, new_id), True  # type: ignore[return-value]
    existing = session.scalar(
        select(Collection).where(Collection.dataset_id == dataset_id, Collection.content_hash == content_hash)
    )
    return _record(existing), False


def get_collection(session: Session, collection_id: int, *, for_update: bool = False) -> CollectionRecord | None:
    query = select(Collection).where(Collection.id == collection_id).execution_options(populate_existing=True)
    if for_update:
        query = query.with_for_update()
    row = session.scalar(query)
    return _record(row) if row else None


def list_collections(
    session: Session, dataset_id: int, *, offset: int = 0, limit: int = 50, status: str | None = None
) -> tuple[list[CollectionRecord], int]:
    """One page of a dataset's collections, newest first, and the total."""
    query = select(Collection).where(Collection.dataset_id == dataset_id)
    if status:
        query = query.where(Collection.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(query.order_by(Collection.id.desc()).offset(offset).limit(limit))
    return [_record(r) for r in rows], int(total or 0)


def status_counts(session: Session, dataset_id: int) -> dict[str, int]:
    """How many of a dataset's collections are in each status."""
    rows = session.execute(
        select(Collection.status, func.count()).where(Collection.dataset_id == dataset_id).group_by(Collection.status)
    ).all()
    return {status: int(n) for status, n in rows}


def file_paths(session: Session, dataset_id: int) -> list[str]:
    """Stored files of the dataset's collections."""
    query = select(Collection.file_path).where(Collection.dataset_id == dataset_id, Collection.file_path.is_not(None))
    return sorted(set(session.scalars(query)))


def file_is_referenced(session: Session, file_path: str) -> bool:
    return session.scalar(select(func.count()).where(Collection.file_path == file_path)) > 0


def set_progress(session: Session, collection_id: int, *, status: str, progress: int, started: bool = False) -> bool:
    """Move a collection to a processing stage; False when it no longer exists (deleted meanwhile)."""
    values: dict[str, Any] = {"status": status, "progress": max(0, min(100, progress)), "updated_at": func.now()}
    if started:
        values.update(started_at=func.now(), finished_at=None, error=None)
    result = session.execute(update(Collection).where(Collection.id == collection_id).values(**values))
    return result.rowcount > 0


def set_source_details(session: Session, collection_id: int, *, content_type: str | None, size_bytes: int) -> None:
    session.execute(
        update(Collection)
        .where(Collection.id == collection_id)
        .values(content_type=content_type, size_bytes=size_bytes)
    )


def mark_ready(
    session: Session, collection_id: int, *, chunk_count: int, stats: dict[str, Any], warnings: list[str]
) -> None:
    session.execute(
        update(Collection)
        .where(Collection.id == collection_id)
        .values(
            status="ready",
            progress=100,
            error=None,
            chunk_count=chunk_count,
            stats=stats,
            warnings=warnings,
            updated_at=func.now(),
            finished_at=func.now(),
        )
    )


def mark_error(
    session: Session,
    collection_id: int,
    message: str,
    *,
    warnings: list[str] | None = None,
    stats: dict | None = None,
    retryable: bool = True,
) -> bool:
    """Record why processing failed; earlier chunks of the collection (if any) stay as they were.

    `retryable` False (noted as `stats.retryable`) says retrying cannot help: the source itself is unreadable."""
    values: dict[str, Any] = {"status": "error", "error": message, "updated_at": func.now(), "finished_at": func.now()}
    if warnings is not None:
        values["warnings"] = warnings
    if stats is not None:
        values["stats"] = stats
    if not retryable:
        base = Collection.stats if stats is None else cast(literal(json.dumps(stats)), JSONB)
        values["stats"] = base.op("||")(cast(literal('{"retryable": false}'), JSONB))
    return session.execute(update(Collection).where(Collection.id == collection_id).values(**values)).rowcount > 0


def mark_queued(session: Session, collection_id: int, *, note: str | None = None) -> bool:
    """Back to the queue (retry, released or stalled job); `note` tells the user why it waits."""
    result = session.execute(
        update(Collection)
        .where(Collection.id == collection_id)
        .values(status="queued", progress=0, error=note, updated_at=func.now(), finished_at=None)
    )
    return result.rowcount > 0


def refresh_chunk_count(session: Session, collection_id: int) -> int:
    """Recount the searchable chunks (those with a vector) after a manual change."""
    count = session.scalar(
        select(func.count()).where(Chunk.collection_id == collection_id, Chunk.embedding.is_not(None))
    )
    session.execute(
        update(Collection)
        .where(Collection.id == collection_id)
        .values(chunk_count=int(count or 0), updated_at=func.now())
    )
    return int(count or 0)


def delete_collection(session: Session, collection_id: int) -> bool:
    """Delete a collection; its chunks and jobs go with it (foreign keys cascade)."""
    return session.execute(delete(Collection).where(Collection.id == collection_id)).rowcount > 0


def lock_file(session: Session, file_path: str) -> None:
    """Serialise work on one stored file (keep on upload, unlink on delete) until the transaction ends."""
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:p))"), {"p": file_path})


def ids_with_files(session: Session, collection_ids: set[int]) -> set[int]:
    """The collections among these that keep an uploaded file."""
    query = select(Collection.id).where(Collection.id.in_(collection_ids), Collection.file_path.isnot(None))
    return set(session.scalars(query))
