"""Collections: add a source (uploaded file, pasted text, link) to a dataset and queue it; list, inspect, delete, retry.

Obviously bad uploads (empty, too large, a type no reader handles) are refused here with a 4xx error.
Everything that needs reading the content happens later in the worker (`kb.services.ingest`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

from kb.db import queue
from kb.db.files import StagedFile, safe_name
from kb.db.store import collections as collection_store
from kb.db.store.collections import CollectionRecord
from kb.db.store.datasets import DatasetRecord
from kb.errors import Conflict, KBError, Unprocessable, UnsupportedMedia, found
from kb.ingest.fetch import check_link
from kb.runtime import Runtime
from kb.services.datasets import dataset_record
from kb.services.stored_files import remove_unreferenced_files

log = logging.getLogger(__name__)

INGEST = "ingest"


@dataclass(frozen=True)
class Upload:
    """One file of an upload request: the client's name (a label only) and its bytes as a stream."""

    filename: str | None
    file: BinaryIO


@dataclass(frozen=True)
class AddOutcome:
    """What became of one source: its collection (new, or the existing one for identical content) or the error."""

    name: str
    collection: CollectionRecord | None = None
    duplicate: bool = False
    error: KBError | None = None


@dataclass(frozen=True)
class CollectionDetail:
    collection: CollectionRecord
    job: queue.Job | None


def _mode(dataset: DatasetRecord, mode: str | None) -> str:
    return mode or dataset.chunk_settings.get("mode") or "chunk"


def readable_type(data: bytes, filename: str) -> str:
    """The sniffed content type when a reader handles it; UnsupportedMedia naming the accepted types otherwise."""
    from kb.ingest import sniff_content_type
    from kb.ingest.readers import find_reader
    from kb.ingest.reading import accepted_types_sentence

    content_type = sniff_content_type(data, filename)
    if find_reader(content_type) is None:
        raise UnsupportedMedia(
            f'"{filename}" is of type {content_type}, which kb cannot read. {accepted_types_sentence()}'
        )
    return content_type


def _register(
    rt: Runtime,
    dataset: DatasetRecord,
    *,
    name: str,
    source_type: str,
    content_hash: str,
    mode: str,
    staged: StagedFile | None = None,
    content_type: str | None = None,
    source_uri: str | None = None,
) -> AddOutcome:
    """Insert the collection and its job in one transaction, keeping the staged file; identical content is found, not redone."""
    with rt.db.session() as session:
        if staged is not None:
            collection_store.lock_file(session, staged.relative_path)
        record, created = collection_store.add_collection(
            session,
            dataset_id=dataset.id,
            name=name,
            source_type=source_type,
            content_hash=content_hash,
            source_uri=source_uri,
            file_path=staged.relative_path if staged is not None else None,
            content_type=content_type,
            size_bytes=staged.size if staged is not None else 0,
            mode=mode,
        )
        if created:
            if staged is not None:
                rt.files.keep(staged)
            queue.enqueue(session, INGEST, collection_id=record.id, max_attempts=rt.settings.job_max_attempts)
        session.commit()
    if created:
        log.info("Queued '%s' (collection %d) for dataset '%s'", name, record.id, dataset.name)
    return AddOutcome(name=name, collection=record, duplicate=not created)


def _add_staged(
    rt: Runtime, dataset: DatasetRecord, staged: StagedFile, *, name: str, source_type: str, mode: str
) -> AddOutcome:
    try:
        if staged.size == 0:
            raise Unprocessable(f'"{name}" is empty (0 bytes); upload a file that contains text.', code="empty_file")
        # The whole file: a DOCX is told from other ZIPs by its central directory, which sits at the end.
        content_type = readable_type(staged.temp_path.read_bytes(), name)
        return _register(
            rt,
            dataset,
            name=name,
            source_type=source_type,
            content_hash=staged.sha256,
            mode=mode,
            staged=staged,
            content_type=content_type,
        )
    finally:
        rt.files.discard(staged)


def add_file(rt: Runtime, dataset_id: int, upload: Upload, *, mode: str | None = None) -> AddOutcome:
    """Store one uploaded file by content hash and queue it; raises KBError for an empty, too large or unreadable file."""
    dataset = dataset_record(rt, dataset_id)
    name = safe_name(upload.filename)
    staged = rt.files.stage(upload.file, max_bytes=rt.settings.max_upload_bytes, name=f'"{name}"')
    return _add_staged(rt, dataset, staged, name=name, source_type="file", mode=_mode(dataset, mode))


def add_files(rt: Runtime, dataset_id: int, uploads: Sequence[Upload], *, mode: str | None = None) -> list[AddOutcome]:
    """Add several files; each gets its own outcome, and one bad file never stops the others."""
    dataset_record(rt, dataset_id)
    outcomes = []
    for upload in uploads:
        try:
            outcomes.append(add_file(rt, dataset_id, upload, mode=mode))
        except KBError as exc:
            outcomes.append(AddOutcome(name=safe_name(upload.filename), error=exc))
    return outcomes


def add_text(rt: Runtime, dataset_id: int, *, name: str, text: str, mode: str | None = None) -> AddOutcome:
    """Add pasted text as a source (kept like a file, so retries read the same bytes)."""
    dataset = dataset_record(rt, dataset_id)
    label = safe_name(name, "pasted text")
    if not text.strip():
        raise Unprocessable("The pasted text is empty; paste some text to index.", code="empty_file")
    staged = rt.files.stage_bytes(text.encode("utf-8"), max_bytes=rt.settings.max_upload_bytes, name="The text")
    return _add_staged(rt, dataset, staged, name=label, source_type="text", mode=_mode(dataset, mode))


def add_link(rt: Runtime, dataset_id: int, *, url: str, name: str | None = None, mode: str | None = None) -> AddOutcome:
    """Queue a link; the worker fetches it (the same link twice in one dataset is one collection)."""
    dataset = dataset_record(rt, dataset_id)
    url = check_link(url, allow_private=rt.settings.link_allow_private)
    content_hash = hashlib.sha256(f"link:{url}".encode()).hexdigest()
    label = (name or "").strip()[:500] or url[:500]
    return _register(
        rt,
        dataset,
        name=label,
        source_type="link",
        content_hash=content_hash,
        mode=_mode(dataset, mode),
        source_uri=url,
    )


def source_filename(collection: CollectionRecord) -> str:
    """The name readers see: pasted text without an extension reads as plain text."""
    if collection.source_type == "text" and not PurePosixPath(collection.name).suffix:
        return collection.name + ".txt"
    return collection.name


def list_collections(
    rt: Runtime, dataset_id: int, *, offset: int = 0, limit: int = 50, status: str | None = None
) -> tuple[list[CollectionRecord], int]:
    """One page of a dataset's collections, newest first, and the total."""
    dataset_record(rt, dataset_id)
    with rt.db.session() as session:
        return collection_store.list_collections(session, dataset_id, offset=offset, limit=limit, status=status)


def get_collection(rt: Runtime, collection_id: int) -> CollectionDetail:
    """A collection's status, progress, counts, error and warnings, with its latest job (attempts, next try)."""
    with rt.db.session() as session:
        # The job first: a worker ends the job and the collection in one commit, so a job read as finished
        # guarantees the collection read next is too (read the other way round, a commit in between pairs
        # a finished job with a collection still "embedding").
        job = queue.latest_job(session, collection_id)
        record = found(collection_store.get_collection(session, collection_id), "collection", collection_id)
        return CollectionDetail(record, job)


def delete_collection(rt: Runtime, collection_id: int) -> None:
    """Delete a collection, its chunks and jobs, and its stored file unless another collection uses it."""
    with rt.db.session() as session:
        record = found(collection_store.get_collection(session, collection_id), "collection", collection_id)
        collection_store.delete_collection(session, collection_id)
        session.commit()
    remove_unreferenced_files(rt, [record.file_path] if record.file_path else [])
    log.info("Deleted '%s' (collection %d)", record.name, collection_id)


def retry_collection(rt: Runtime, collection_id: int) -> CollectionRecord:
    """Queue a collection that ended in error again."""
    with rt.db.session() as session:
        record = found(
            collection_store.get_collection(session, collection_id, for_update=True), "collection", collection_id
        )
        if record.status != "error":
            raise Conflict(
                f"Only a collection that ended in error can be retried; '{record.name}' is {record.status}.",
                code="not_failed",
            )
        collection_store.mark_queued(session, collection_id)
        queue.enqueue(session, INGEST, collection_id=collection_id, max_attempts=rt.settings.job_max_attempts)
        session.commit()
        record = collection_store.get_collection(session, collection_id)
    log.info("Queued '%s' (collection %d) again", record.name, collection_id)
    return record  # type: ignore[return-value]
