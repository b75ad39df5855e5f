"""Datasets (knowledge bases): create with an embedding model, read, change settings, delete completely."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from sqlalchemy.exc import IntegrityError

from kb.db.store import collections as collection_store
from kb.db.store import datasets as dataset_store
from kb.db.store.datasets import DatasetRecord
from kb.errors import BadRequest, Conflict, KBError, ServiceUnavailable, Unprocessable, found
from kb.ml.types import Embedder
from kb.runtime import Runtime
from kb.schemas import ChunkSettings, DatasetCreate, DatasetUpdate
from kb.services.stored_files import remove_unreferenced_files

log = logging.getLogger(__name__)

# Sentence-transformers count [CLS] and [SEP] in max_seq_length; `count_tokens` does not.
SPECIAL_TOKENS = 2


def token_cap(embedder: Embedder) -> int:
    """The longest chunk (in the embedder's own tokens) the embedder reads without truncating.

    The document prefix (e5's "passage: ", 2 tokens) is read in the same window, so it counts too.
    """
    prefix = getattr(embedder, "document_prefix", "")
    return max(16, embedder.max_tokens - SPECIAL_TOKENS - (embedder.count_tokens(prefix) if prefix else 0))


def default_chunk_tokens(embedder: Embedder) -> int:
    """The chunk size a dataset gets unless it sets one: the embedder's own (`chunk_tokens`), else its whole window."""
    return min(embedder.chunk_tokens or token_cap(embedder), token_cap(embedder))


def fit_chunk_settings(chunk_settings: ChunkSettings | dict[str, Any], embedder: Embedder) -> dict[str, Any]:
    """Chunk settings with defaults filled in (`max_tokens`: the embedder's) and `max_tokens` capped at its window."""
    parsed = (
        chunk_settings if isinstance(chunk_settings, ChunkSettings) else ChunkSettings.model_validate(chunk_settings)
    )
    values = parsed.model_dump()
    values["max_tokens"] = min(values["max_tokens"] or default_chunk_tokens(embedder), token_cap(embedder))
    return values


class EmbedderChanged(ServiceUnavailable):
    """The dataset's vectors were remade by another embedder while new ones were computed; try again."""

    code = "embedder_changed"


class EmbedderUnavailable(ServiceUnavailable):
    """The model that made a dataset's vectors cannot be loaded here; the vectors are kept, nothing is re-made."""

    code = "embedder_unavailable"


def _unavailable(dataset: DatasetRecord, reason: str) -> EmbedderUnavailable:
    return EmbedderUnavailable(
        f"Dataset '{dataset.name}' cannot use its embedding model '{dataset.embed_model}' ({dataset.embed_variant}): "
        f"{reason.rstrip('.')}. Its stored vectors are kept; restore the model or re-embed the dataset with another."
    )


def embedder_problem(rt: Runtime, dataset: DatasetRecord) -> str | None:
    """Why the dataset's embedder cannot be loaded, found without loading it (for its page); None when it looks fine."""
    try:
        rt.registry.check_embedder(dataset.embed_model, dataset.embed_variant)
    except KBError as exc:
        return _unavailable(dataset, exc.message).message
    return None


def dataset_embedder(rt: Runtime, dataset: DatasetRecord) -> Embedder:
    """The embedder that made the dataset's vectors (its model in its recorded variant), for documents and queries.

    A model that cannot be loaded raises EmbedderUnavailable; a dimension that no longer matches is refused.
    """
    try:
        embedder = rt.registry.embedder(dataset.embed_model, variant=dataset.embed_variant)
    except KBError as exc:
        raise _unavailable(dataset, exc.message) from exc
    if embedder.dim != dataset.embed_dim:
        raise Unprocessable(
            f"The embedding model '{dataset.embed_model}' now gives {embedder.dim}-dimensional vectors but this dataset "
            f"holds {dataset.embed_dim}-dimensional ones; restore the model's configuration or create a new dataset.",
            code="embedding_dimension_changed",
        )
    return embedder


def assert_embedder_current(session, dataset_id: int, embedder: Embedder) -> None:
    """In a transaction about to store vectors: lock the dataset's embedder and check it still made them."""
    current = dataset_store.lock_embedder(session, dataset_id)
    if current is not None and current != (embedder.name, embedder.variant):
        raise EmbedderChanged(
            f"The dataset was re-embedded with the '{current[1]}' variant of '{current[0]}' while this was being processed; "
            "the work will be redone with it. Try again if you were adding a chunk.",
        )


def _name_taken(name: str) -> Conflict:
    return Conflict(f"A dataset named '{name}' already exists; choose another name.", code="dataset_exists")


def create_dataset(rt: Runtime, data: DatasetCreate) -> DatasetRecord:
    """Create a dataset bound to an embedding model (its dimension and variant are recorded)."""
    embed_model = data.embed_model or rt.settings.embed_model
    embedder = rt.registry.embedder(embed_model, variant=data.embed_variant)
    with rt.db.session() as session:
        try:
            record = dataset_store.add_dataset(
                session,
                name=data.name,
                description=data.description,
                embed_model=embed_model,
                embed_dim=embedder.dim,
                embed_variant=embedder.variant,
                chunk_settings=fit_chunk_settings(data.chunk_settings, embedder),
                search_settings=data.search_settings,
            )
            session.commit()
        except IntegrityError as exc:
            raise _name_taken(data.name) from exc
    log.info("Created dataset '%s' (embedding model %s, %d dimensions)", record.name, embed_model, embedder.dim)
    return record


def list_datasets(rt: Runtime) -> list[DatasetRecord]:
    """Every dataset with its collection and chunk counts."""
    with rt.db.session() as session:
        return dataset_store.list_datasets(session)


def dataset_record(rt: Runtime, dataset_id: int) -> DatasetRecord:
    """The dataset's own row (no counts), or NotFound."""
    with rt.db.session() as session:
        return found(dataset_store.get_dataset(session, dataset_id), "dataset", dataset_id)


def get_dataset(rt: Runtime, dataset_id: int) -> DatasetRecord:
    """One dataset with its counts and how many collections are in each status."""
    with rt.db.session() as session:
        record = found(dataset_store.get_dataset(session, dataset_id), "dataset", dataset_id)
        counts = collection_store.status_counts(session, dataset_id)
        chunk_count = dataset_store.chunk_count(session, dataset_id)
    return replace(record, status_counts=counts, collection_count=sum(counts.values()), chunk_count=chunk_count)


def find_dataset(rt: Runtime, name: str) -> DatasetRecord | None:
    with rt.db.session() as session:
        return dataset_store.get_dataset_by_name(session, name)


def update_dataset(rt: Runtime, dataset_id: int, data: DatasetUpdate) -> DatasetRecord:
    """Rename, describe, or change chunk/search settings (chunk settings apply to sources added later)."""
    current = get_dataset(rt, dataset_id)
    if data.embed_model is not None and data.embed_model != current.embed_model:
        raise BadRequest(
            "A dataset's embedding model cannot be changed in place: its stored vectors would no longer match. "
            f"Re-embed it with the new model: POST /api/datasets/{dataset_id}/reembed with "
            f'{{"embed_model": "{data.embed_model}"}} (or the Re-embed form on its settings page).',
            code="embed_model_fixed",
        )
    if data.embed_variant is not None and data.embed_variant != current.embed_variant:
        raise BadRequest(
            f"This dataset's vectors were made by the '{current.embed_variant}' variant of its embedding model; "
            f"switching to '{data.embed_variant}' means re-embedding every chunk: "
            f'POST /api/datasets/{dataset_id}/reembed with {{"embed_variant": "{data.embed_variant}"}}.',
            code="embed_variant_fixed",
        )
    values: dict[str, Any] = data.model_dump(
        exclude_unset=True, exclude={"embed_model", "embed_variant", "chunk_settings"}
    )
    if data.chunk_settings is not None:  # fields not sent keep their current values
        merged = {**current.chunk_settings, **data.chunk_settings.model_dump(exclude_unset=True)}
        values["chunk_settings"] = fit_chunk_settings(merged, dataset_embedder(rt, current))
    with rt.db.session() as session:
        try:
            dataset_store.update_dataset(session, dataset_id, **values)
            session.commit()
        except IntegrityError as exc:
            raise _name_taken(values.get("name", "")) from exc
    return get_dataset(rt, dataset_id)


def delete_dataset(rt: Runtime, dataset_id: int) -> None:
    """Delete a dataset with its collections, chunks, jobs, vector index and stored files no other dataset uses."""
    with rt.db.session() as session:
        record = found(dataset_store.get_dataset(session, dataset_id), "dataset", dataset_id)
        paths = collection_store.file_paths(session, dataset_id)
        dataset_store.delete_dataset(session, dataset_id)
        session.commit()
    remove_unreferenced_files(rt, paths)
    log.info("Deleted dataset '%s' and its %d stored files", record.name, len(paths))
