"""Ingest one collection: read → chunk → [QA split] → embed → write all its chunks in one transaction.

Status moves `parsing → chunking → embedding → ready` with `progress` 0–100, each step in its own short
transaction so users watch it happen. A problem with the source itself (encrypted, scanned, empty, a
link that fails) ends in `error` with the reader's sentence. Passing trouble (a remote model down) and
unexpected exceptions are raised to the caller: `kb.worker.jobs` retries them per the queue policy.
Re-running is idempotent: the final transaction replaces whatever chunks the collection had.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from kb.db.store import chunks as chunk_store
from kb.db.store import collections as collection_store
from kb.db.store import datasets as dataset_store
from kb.db.store import fulltext_stats
from kb.db.store.collections import CollectionRecord
from kb.db.store.datasets import DatasetRecord
from kb.errors import (
    Cancelled,
    KBError,
    RateLimited,
    ServiceUnavailable,
    Unprocessable,
    UnsupportedMedia,
    UpstreamError,
)
from kb.ingest import read_document
from kb.ingest.chunking import chunk_document
from kb.ingest.fetch import fetch_link
from kb.ingest.qagen import generate_qa_pairs
from kb.ingest.types import ChunkDraft, ParsedDocument
from kb.ml.types import Embedder
from kb.runtime import Runtime
from kb.services.collections import source_filename
from kb.services.datasets import assert_embedder_current, dataset_embedder, fit_chunk_settings

log = logging.getLogger(__name__)

TRANSIENT_ERRORS = (ServiceUnavailable, UpstreamError, RateLimited)
EMBED_SLICE = 128  # texts per progress step; the embedder batches inside it
EMBED_BATCH = 32
Progress = Callable[[str, int, int], None]  # (stage, done, total)
Settle = Callable[[Session], None]


class CollectionGone(Exception):
    """The collection was deleted while it was being processed."""


@dataclass(frozen=True)
class PlannedChunk:
    """A row to store: `vector_index` into the embedded texts, or None for a reference-only source passage."""

    draft: ChunkDraft
    position: int
    kind: str
    q: str
    a: str
    vector_index: int | None
    source_row: int | None = None  # index (in the plan) of the source passage of a generated pair


class _Tracker:
    """Reports stage and percentage to the collection row and to an optional callback; stops on cancel."""

    def __init__(self, rt: Runtime, collection_id: int, cancel: threading.Event | None, progress: Progress | None):
        self.rt, self.collection_id, self.cancel, self.progress = rt, collection_id, cancel, progress

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled()

    def stage(self, status: str, percent: int, *, started: bool = False) -> None:
        self.check()
        with self.rt.db.session() as session:
            alive = collection_store.set_progress(
                session, self.collection_id, status=status, progress=percent, started=started
            )
            session.commit()
        if not alive:
            raise CollectionGone()

    def step(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)


def _read(rt: Runtime, collection: CollectionRecord) -> ParsedDocument:
    if collection.source_type == "link":
        fetched = fetch_link(
            collection.source_uri or "",
            max_bytes=rt.settings.max_upload_bytes,
            allow_private=rt.settings.link_allow_private,
            deadline_seconds=rt.settings.link_timeout_seconds,
        )
        with rt.db.session() as session:
            collection_store.set_source_details(
                session, collection.id, content_type=fetched.content_type, size_bytes=len(fetched.data)
            )
            session.commit()
        return read_document(fetched.data, fetched.filename)
    if not collection.file_path or not rt.files.exists(collection.file_path):
        raise Unprocessable(
            "The stored copy of this source is missing (the data directory may have been cleaned); "
            "delete this entry and upload the file again.",
            code="file_missing",
        )
    return read_document(rt.files.read(collection.file_path), source_filename(collection))


def _plan(drafts: list[ChunkDraft], pairs: list[list[tuple[str, str]]] | None) -> list[PlannedChunk]:
    """Rows in document order; with QA pairs, a chunk that gave pairs becomes their reference-only source."""
    plan: list[PlannedChunk] = []
    vectors = 0

    def add(draft: ChunkDraft, kind: str, q: str, a: str, *, embed: bool, source_row: int | None = None) -> None:
        nonlocal vectors
        plan.append(PlannedChunk(draft, len(plan), kind, q, a, vectors if embed else None, source_row))
        vectors += int(embed)

    for index, draft in enumerate(drafts):
        generated = pairs[index] if pairs is not None else []
        if not generated:
            add(draft, draft.kind, draft.q, draft.a, embed=True)
            continue
        source_row = len(plan)
        add(draft, "source", draft.q, draft.a, embed=False)
        for question, answer in generated:
            add(draft, "qa", question, answer, embed=True, source_row=source_row)
    return plan


def _embed(embedder: Embedder, texts: list[str], tracker: _Tracker, start: int) -> np.ndarray:
    vectors = np.empty((len(texts), embedder.dim), dtype=np.float32)
    for begin in range(0, len(texts), EMBED_SLICE):
        tracker.check()
        end = min(begin + EMBED_SLICE, len(texts))
        vectors[begin:end] = embedder.embed_documents(texts[begin:end], batch_size=EMBED_BATCH)
        tracker.step("embedding", end, len(texts))
        if end < len(texts):
            tracker.stage("embedding", start + (95 - start) * end // len(texts))
    return vectors


def _new_chunk(row: PlannedChunk, vectors: np.ndarray, count_tokens, source_id: int | None) -> chunk_store.NewChunk:
    return chunk_store.NewChunk(
        q=row.q,
        a=row.a,
        embedding=None if row.vector_index is None else vectors[row.vector_index],
        position=row.position,
        page=row.draft.page,
        heading=row.draft.heading,
        token_count=row.draft.token_count if row.kind != "qa" else count_tokens(row.q),
        kind=row.kind,
        source_chunk_id=source_id,
    )


def _write(
    rt: Runtime,
    collection: CollectionRecord,
    plan: list[PlannedChunk],
    vectors: np.ndarray,
    embedder: Embedder,
    stats: dict,
    warnings: list[str],
    settle: Settle | None,
) -> CollectionRecord:
    """Replace the collection's chunks and mark it ready, all in one transaction."""
    count_tokens = embedder.count_tokens
    with rt.db.session() as session:
        if settle is not None:
            settle(session)
        assert_embedder_current(session, collection.dataset_id, embedder)
        if collection_store.get_collection(session, collection.id, for_update=True) is None:
            raise CollectionGone()
        chunk_store.delete_collection_chunks(session, collection.id)
        sources = [row for row in plan if row.kind == "source"]
        source_ids = chunk_store.add_chunks(
            session, collection.dataset_id, collection.id, [_new_chunk(r, vectors, count_tokens, None) for r in sources]
        )
        id_of_row = {row.position: chunk_id for row, chunk_id in zip(sources, source_ids, strict=True)}
        searchable = [
            _new_chunk(r, vectors, count_tokens, id_of_row.get(r.source_row)) for r in plan if r.kind != "source"
        ]
        chunk_store.add_chunks(session, collection.dataset_id, collection.id, searchable)
        collection_store.mark_ready(session, collection.id, chunk_count=len(searchable), stats=stats, warnings=warnings)
        session.commit()
        return collection_store.get_collection(session, collection.id)  # type: ignore[return-value]


def record_error(rt: Runtime, collection_id: int, message: str, *, settle: Settle | None = None, **extra) -> None:
    """End a collection in `error` with a message a user can act on."""
    with rt.db.session() as session:
        if settle is not None:
            settle(session)
        collection_store.mark_error(session, collection_id, message, **extra)
        session.commit()


class _Laps:
    """Seconds per stage, each measured from the end of the one before."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self.last, 2)
        self.last = now

    @property
    def total(self) -> float:
        return time.perf_counter() - self.started


def _refresh_fulltext_stats(rt: Runtime, dataset_id: int) -> None:
    """Recount the dataset's BM25 statistics if it changed size enough; the collection is ready either way."""
    try:
        with rt.db.session() as session:
            if fulltext_stats.refresh_if_stale(session, dataset_id):
                session.commit()
    except SQLAlchemyError:
        log.exception("Could not refresh the full-text statistics of dataset %d; searches count them live", dataset_id)


def ingest_collection(
    rt: Runtime,
    collection_id: int,
    *,
    settle: Settle | None = None,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> CollectionRecord | None:
    """Turn one queued collection into stored chunks; None when it was deleted meanwhile.

    `settle(session)` runs inside the transaction that records the outcome (ready or error): the
    worker checks there that it still owns the job and marks the job done, so the outcome and the
    job's end are one commit. `cancel` stops at the next checkpoint with `kb.errors.Cancelled`.
    """
    with rt.db.session() as session:
        collection = collection_store.get_collection(session, collection_id)
        dataset = dataset_store.get_dataset(session, collection.dataset_id) if collection else None
    if collection is None or dataset is None:
        return None
    tracker = _Tracker(rt, collection_id, cancel, progress)
    warnings: list[str] = []
    laps = _Laps()
    try:
        stored = _process(rt, collection, dataset, tracker, laps, warnings, settle)
    except CollectionGone:
        log.info("'%s' (collection %d) was deleted while being processed; stopped", collection.name, collection_id)
        return None
    except TRANSIENT_ERRORS:
        raise
    except KBError as exc:
        log.info("Could not process '%s' (collection %d): %s", collection.name, collection_id, exc.message)
        # An unreadable source fails the same way again: the page then offers no Retry.
        retryable = not isinstance(exc, Unprocessable | UnsupportedMedia)
        record_error(rt, collection_id, exc.message, settle=settle, warnings=warnings, retryable=retryable)
        with rt.db.session() as session:
            return collection_store.get_collection(session, collection_id)
    _refresh_fulltext_stats(rt, collection.dataset_id)
    log.info(
        "'%s' (collection %d) is ready: %d chunks in %.1f s",
        collection.name,
        collection_id,
        stored.chunk_count,
        laps.total,
    )
    return stored


def _process(
    rt: Runtime,
    collection: CollectionRecord,
    dataset: DatasetRecord,
    tracker: _Tracker,
    laps: _Laps,
    warnings: list[str],
    settle: Settle | None,
) -> CollectionRecord:
    tracker.stage("parsing", 2, started=True)
    embedder = dataset_embedder(rt, dataset)  # loads the model on a worker's first job
    laps("model")
    document = _read(rt, collection)
    warnings.extend(document.warnings)
    laps("read")

    tracker.stage("chunking", 15)
    chunking = fit_chunk_settings(dataset.chunk_settings, embedder)
    drafts = chunk_document(
        document,
        count_tokens=embedder.count_tokens,
        max_tokens=chunking["max_tokens"],
        overlap=chunking["overlap"],
        separators=chunking["separators"],
    )
    if not drafts:
        raise Unprocessable("No text chunks could be made from this source.", code="no_text")
    stats: dict = {"mode": collection.mode, "content_type": document.content_type, "max_tokens": chunking["max_tokens"]}
    del document
    pairs = _qa_split(rt, drafts, chunking, tracker, stats, warnings) if collection.mode == "qa" else None
    laps("chunk")

    embed_start = 60 if pairs is not None else 25
    tracker.stage("embedding", embed_start)
    plan = _plan(drafts, pairs)
    texts = [row.q for row in plan if row.vector_index is not None]
    vectors = _embed(embedder, texts, tracker, embed_start)
    laps("embed")

    stats.update(
        chunks=len(texts),
        tokens=sum(d.token_count for d in drafts),
        pages=max((d.page or 0 for d in drafts), default=0) or None,
        seconds=laps.seconds,
    )
    tracker.stage("embedding", 97)
    return _write(rt, collection, plan, vectors, embedder, stats, warnings, settle)


def _qa_split(
    rt: Runtime, drafts: list[ChunkDraft], chunking: dict, tracker: _Tracker, stats: dict, warnings: list[str]
) -> list[list[tuple[str, str]]]:
    """Ask the chat model for Q/A pairs per chunk (imported Q/A rows are kept as they are)."""
    chat = rt.registry.chat()
    to_split = [index for index, draft in enumerate(drafts) if draft.kind != "qa"]

    def on_chunk(done: int, total: int) -> None:
        tracker.step("qa", done, total)
        tracker.stage("chunking", 15 + 45 * done // max(total, 1))

    outcome = generate_qa_pairs(
        chat,
        [drafts[i] for i in to_split],
        max_pairs=chunking["qa_max_pairs"],
        cancel=tracker.cancel,
        on_chunk=on_chunk,
    )
    stats["qa"] = outcome.stats(chat.name)
    if (warning := outcome.warning()) is not None:
        warnings.append(warning)
    pairs: list[list[tuple[str, str]]] = [[] for _ in drafts]
    for index, generated in zip(to_split, outcome.pairs, strict=True):
        pairs[index] = generated
    return pairs
