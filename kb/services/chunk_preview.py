"""A chunk preview: how a file would be cut under the chosen settings, before anything is stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from kb.errors import BadRequest
from kb.ingest import read_document
from kb.ingest.chunking import chunk_document
from kb.runtime import Runtime
from kb.schemas import ChunkSettings
from kb.services.datasets import dataset_embedder, dataset_record, fit_chunk_settings

PREVIEW_CHUNKS = 10


@dataclass(frozen=True)
class PreviewChunk:
    text: str
    tokens: int
    characters: int
    page: int | None


@dataclass(frozen=True)
class ChunkPreview:
    total: int  # chunks the whole file makes
    chunks: list[PreviewChunk]  # the first few
    settings: dict[str, Any]  # what was applied, max_tokens capped at the embedder's reach


def preview_chunks(
    rt: Runtime, dataset_id: int, data: bytes, filename: str, overrides: dict[str, Any], limit: int = PREVIEW_CHUNKS
) -> ChunkPreview:
    """Read and chunk `data` as the dataset would (its settings, `overrides` on top); nothing is stored."""
    dataset = dataset_record(rt, dataset_id)
    try:
        settings = ChunkSettings.model_validate({**dataset.chunk_settings, **overrides})
    except ValidationError as exc:
        raise BadRequest(f"These chunk settings are not valid: {exc.errors()[0]['msg']}") from exc
    embedder = dataset_embedder(rt, dataset)
    fitted = fit_chunk_settings(settings, embedder)
    drafts = chunk_document(
        read_document(data, filename),
        count_tokens=embedder.count_tokens,
        max_tokens=fitted["max_tokens"],
        overlap=fitted["overlap"],
        separators=fitted["separators"],
    )
    shown = [PreviewChunk(d.q, d.token_count, len(d.q), d.page) for d in drafts[:limit]]
    return ChunkPreview(len(drafts), shown, fitted)
