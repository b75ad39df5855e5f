"""The original file behind a document: downloaded from the admin, or opened from a citation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kb.db.store import collections as collection_store
from kb.errors import NotFound, not_found
from kb.runtime import Runtime
from kb.services.apps import get_app

PDF = "application/pdf"


@dataclass(frozen=True)
class OriginalFile:
    path: Path
    name: str
    content_type: str
    inline: bool  # a PDF opens in the browser's viewer (at a cited page); anything else downloads


def original_file(rt: Runtime, collection_id: int, *, app_id: int | None = None) -> OriginalFile:
    """The stored upload of a collection; with `app_id`, only from one of that app's datasets."""
    with rt.db.session() as session:
        collection = collection_store.get_collection(session, collection_id)
    if collection is None or (app_id is not None and collection.dataset_id not in get_app(rt, app_id).dataset_ids):
        raise not_found("document", collection_id)
    if not collection.file_path or not rt.files.exists(collection.file_path):
        raise NotFound(f"Document {collection_id} has no original file (it was pasted, linked or written by hand).")
    content_type = collection.content_type or "application/octet-stream"
    inline = content_type == PDF
    return OriginalFile(
        rt.files.path(collection.file_path),
        collection.name,
        content_type if inline else "application/octet-stream",
        inline,
    )


def with_files(rt: Runtime, collection_ids: set[int]) -> set[int]:
    """Which of these documents have an original file to open."""
    if not collection_ids:
        return set()
    with rt.db.session() as session:
        return collection_store.ids_with_files(session, collection_ids)
