"""Re-embed a dataset with another embedding model or variant: a background job that switches every vector at once.

The new vectors are computed aside (outside any transaction) while searches keep using the old ones;
then the dataset's vectors, its model, dimension and variant change in one transaction, so a search
never compares a query from one model with chunks from another. Chunks added or edited meanwhile are
caught at the end, under the dataset's exclusive lock, which writers of vectors wait for
(`assert_embedder_current`). A cancelled or failed job leaves the dataset exactly as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from kb.db import queue
from kb.db.store import chunks as chunk_store
from kb.db.store import datasets as dataset_store
from kb.db.store.datasets import DatasetRecord
from kb.errors import Conflict, NotFound, not_found
from kb.runtime import Runtime
from kb.schemas import DatasetReembed, ReembedPublic
from kb.services.datasets import get_dataset

log = logging.getLogger(__name__)

REEMBED = "reembed"
SLICE = 256  # texts per progress report (and per check for a cancel request)
EMBED_SHARE = 95  # percent of the bar the embedding takes; the switch takes the rest
Progress = Callable[[str, int], None]  # (stage, percent); may raise ReembedCancelled
Settle = Callable[[object], None]  # called inside the switching transaction (the job completes with it)
CANCELLED = "Cancelled; the dataset keeps its vectors and its embedding model."


class ReembedCancelled(Exception):
    """The user cancelled the re-embedding; nothing was written."""


def _public(job: queue.Job) -> ReembedPublic:
    payload = job.payload
    finished = job.status in ("done", "failed", "cancelled")
    return ReembedPublic(
        job_id=job.id,
        dataset_id=int(payload["dataset_id"]),
        status=job.status,
        stage="finished" if finished else payload.get("stage", "waiting"),
        percent=100 if job.status == "done" else int(payload.get("percent", 0)),
        embed_model=payload["embed_model"],
        embed_variant=payload.get("embed_variant"),
        error=job.last_error if job.status in ("failed", "cancelled") else None,
    )


def request_reembed(rt: Runtime, dataset_id: int, data: DatasetReembed) -> ReembedPublic:
    """Queue the re-embedding of a dataset (checked, not yet loaded: the worker loads the model)."""
    dataset = get_dataset(rt, dataset_id)
    model = data.embed_model or dataset.embed_model
    variant = rt.registry.embedding_variant(model, data.embed_variant)  # unknown model or variant: 400 now
    with rt.db.session() as session:
        dataset_store.lock_embedder(session, dataset_id, exclusive=True)  # two requests at once queue one job
        live = queue.latest_job_with(session, REEMBED, "dataset_id", dataset_id)
        if live is not None and live.status in ("queued", "running"):
            raise Conflict(
                f"dataset '{dataset.name}' is already being re-embedded (job {live.id}); cancel it first",
                code="reembed_running",
            )
        payload = {"dataset_id": dataset_id, "embed_model": model, "embed_variant": variant, "stage": "waiting"}
        job, _ = queue.enqueue(session, REEMBED, collection_id=None, payload=payload, max_attempts=2)
        session.commit()
    log.info("Queued re-embedding of dataset '%s' with %s (%s)", dataset.name, model, variant)
    return _public(job)


def reembed_status(rt: Runtime, dataset_id: int) -> ReembedPublic:
    """The dataset's latest re-embedding job; 404 when it never had one."""
    get_dataset(rt, dataset_id)
    with rt.db.session() as session:
        job = queue.latest_job_with(session, REEMBED, "dataset_id", dataset_id)
    if job is None:
        raise not_found("re-embedding of dataset", dataset_id)
    return _public(job)


def cancel_reembed(rt: Runtime, dataset_id: int) -> ReembedPublic:
    """Cancel the dataset's re-embedding: at once when it waits, at its next step when it runs."""
    current = reembed_status(rt, dataset_id)
    with rt.db.session() as session:
        if not queue.cancel_queued(session, current.job_id, CANCELLED) and current.status == "running":
            queue.update_payload(session, current.job_id, {"cancel": True})
        job = queue.get_job(session, current.job_id)
        session.commit()
    if job is None:
        raise NotFound(f"re-embedding job {current.job_id} no longer exists")
    return _public(job)


def cancel_requested(rt: Runtime, job_id: int) -> bool:
    """Whether the user asked to cancel this job."""
    with rt.db.session() as session:
        job = queue.get_job(session, job_id)
    return job is None or bool(job.payload.get("cancel"))


def _embed(embedder, texts: list[str], progress: Progress) -> np.ndarray:
    vectors = np.empty((len(texts), embedder.dim), dtype=np.float32)
    for start in range(0, len(texts), SLICE):
        end = min(start + SLICE, len(texts))
        vectors[start:end] = embedder.embed_documents(texts[start:end])
        progress("embedding", EMBED_SHARE * end // len(texts))
    return vectors


def _switch(session, dataset: DatasetRecord, embedder, snapshot: dict[int, str], vectors: np.ndarray) -> int:
    """Store the new vectors (and embed what changed meanwhile) and record the new model; returns the count."""
    ids = list(snapshot)
    now = chunk_store.embedded_texts(session, dataset.id)
    late = [i for i, q in now.items() if snapshot.get(i) != q]  # added or edited while we were embedding
    kept = [n for n, i in enumerate(ids) if i in now and i not in late]
    if embedder.dim != dataset.embed_dim:
        dataset_store.drop_vector_index(session, dataset.id)  # the old index casts every vector to the old size
    chunk_store.set_embeddings(session, [ids[n] for n in kept], vectors[kept])
    if late:
        chunk_store.set_embeddings(session, late, embedder.embed_documents([now[i] for i in late]))
    dataset_store.update_dataset(
        session, dataset.id, embed_model=embedder.name, embed_dim=embedder.dim, embed_variant=embedder.variant
    )
    if embedder.dim != dataset.embed_dim:
        dataset_store.ensure_vector_index(session, dataset.id, embedder.dim)
    return len(kept) + len(late)


def reembed_dataset(
    rt: Runtime,
    dataset_id: int,
    embed_model: str | None = None,
    embed_variant: str | None = None,
    *,
    progress: Progress | None = None,
    settle: Settle | None = None,
) -> DatasetRecord:
    """Remake every vector of the dataset with `embed_model` in `embed_variant` (defaults: its own model, the
    model's default variant) and record them; `progress` may raise ReembedCancelled to stop before the switch."""
    report = progress or (lambda stage, percent: None)
    dataset = get_dataset(rt, dataset_id)
    report("loading the model", 0)
    embedder = rt.registry.embedder(embed_model or dataset.embed_model, variant=embed_variant)
    clock = time.perf_counter()
    with rt.db.session() as session:
        snapshot = chunk_store.embedded_texts(session, dataset_id)
    vectors = _embed(embedder, list(snapshot.values()), report) if snapshot else np.empty((0, embedder.dim))
    report("switching", EMBED_SHARE)
    with rt.db.session() as session:
        if dataset_store.lock_embedder(session, dataset_id, exclusive=True) is None:
            raise not_found("dataset", dataset_id)
        count = _switch(session, dataset, embedder, snapshot, vectors)
        if settle is not None:
            settle(session)
        session.commit()
    log.info(
        "Re-embedded dataset '%s' with %s (%s): %d chunks in %.1f s",
        dataset.name,
        embedder.name,
        embedder.variant,
        count,
        time.perf_counter() - clock,
    )
    return get_dataset(rt, dataset_id)
