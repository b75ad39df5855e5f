"""Import files and folders into a dataset from this process (`kb ingest`, the benchmark), through the real queue.

The files are added exactly as uploads are (same checks, file store, dedupe, jobs) and this process
then works on its own jobs like a worker would, with heartbeats; a job another worker took meanwhile
is simply waited for. If this process dies, its jobs are requeued like any other worker's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from kb.db.store.datasets import DatasetRecord
from kb.errors import KBError, NotFound
from kb.runtime import Runtime
from kb.schemas import DatasetCreate
from kb.services import collections as collection_service
from kb.services import datasets as dataset_service
from kb.services.collections import Upload
from kb.services.ingest import Progress
from kb.worker.loop import Worker, run_slots

WAIT_SECONDS = 0.5


@dataclass
class FileResult:
    """One file's outcome: `ready`, `error` (processing failed) or `refused` (not accepted at all)."""

    path: Path
    status: str
    chunks: int = 0
    reason: str = ""
    collection_id: int | None = None
    duplicate: bool = False


def find_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, and those inside the folders named (recursively), skipping hidden ones; sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            found.append(path)
    return list(dict.fromkeys(found))


def ensure_dataset(rt: Runtime, name: str, *, embed_model: str | None = None) -> tuple[DatasetRecord, bool]:
    """The dataset named `name`, created (with default settings) if missing; returns (dataset, created)."""
    existing = dataset_service.find_dataset(rt, name)
    if existing is not None:
        return existing, False
    return dataset_service.create_dataset(rt, DatasetCreate(name=name, embed_model=embed_model)), True


def _add(rt: Runtime, dataset_id: int, path: Path, mode: str | None) -> FileResult:
    try:
        with path.open("rb") as handle:
            outcome = collection_service.add_file(rt, dataset_id, Upload(path.name, handle), mode=mode)
    except KBError as exc:
        return FileResult(path, "refused", reason=exc.message)
    except OSError as exc:
        return FileResult(path, "refused", reason=f"cannot read the file: {exc.strerror or exc}")
    collection = outcome.collection
    return FileResult(path, collection.status, collection_id=collection.id, duplicate=outcome.duplicate)


def _settle(rt: Runtime, result: FileResult) -> bool:
    """Refresh a result from its collection; True once it is final (or nothing is left to work on it)."""
    if result.collection_id is None:
        return True
    try:
        detail = collection_service.get_collection(rt, result.collection_id)
    except NotFound:
        result.status, result.reason = "error", "the collection was deleted while it was being processed"
        return True
    collection, job = detail.collection, detail.job
    result.status, result.chunks = collection.status, collection.chunk_count
    result.reason = collection.error or ("already in the dataset" if result.duplicate else "")
    return collection.status in ("ready", "error") or job is None or job.status in ("done", "failed")


def _job_ids(rt: Runtime, collection_ids: Iterable[int]) -> list[int]:
    ids = []
    for collection_id in collection_ids:
        try:
            job = collection_service.get_collection(rt, collection_id).job
        except NotFound:
            continue
        if job is not None:
            ids.append(job.id)
    return ids


def ingest_paths(
    rt: Runtime,
    dataset_id: int,
    files: list[Path],
    *,
    mode: str | None = None,
    on_file: Callable[[FileResult], None] | None = None,
    progress_for: Callable[[int], Progress] | None = None,
) -> list[FileResult]:
    """Add every file to the dataset, process their jobs here (`KB_WORKER_JOBS` at once), return each file's outcome.

    `progress_for(slot)` gives the progress callback of one of the job slots (0, 1, ...).
    """
    results = [_add(rt, dataset_id, path, mode) for path in files]
    pending = {r.collection_id: r for r in results if not _settle(rt, r)}
    for result in results:
        if result.collection_id not in pending and on_file is not None:
            on_file(result)
    worker = Worker(rt)
    lock = threading.Lock()

    def settle_finished() -> None:
        for collection_id, result in list(pending.items()):
            if _settle(rt, result):
                del pending[collection_id]
                if on_file is not None:
                    on_file(result)

    def slot(number: int) -> None:
        progress = progress_for(number) if progress_for is not None else None
        while True:
            with lock:
                if not pending:
                    return
                job_ids = _job_ids(rt, pending)
            worked = worker.run_once(job_ids=job_ids, progress=progress)
            with lock:
                settle_finished()
                if not pending:
                    return
            if not worked:
                time.sleep(WAIT_SECONDS)  # a retry waiting out its backoff, or another slot or worker on it

    run_slots(slot, worker.jobs, "kb-ingest")
    return results
