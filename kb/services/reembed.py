"""Re-embed a dataset with another variant of its embedding model: every vector remade, switched all at once.

A dataset's vectors and the variant recorded for it change in one transaction, so a search never
compares a query from one variant with chunks from another. The slow part (embedding every chunk)
runs outside that transaction; chunks added or edited meanwhile are caught at the end, under the
dataset's exclusive lock, which writers of vectors wait for (`assert_embedder_current`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from kb.db.store import chunks as chunk_store
from kb.db.store import datasets as dataset_store
from kb.db.store.datasets import DatasetRecord
from kb.errors import Unprocessable
from kb.runtime import Runtime
from kb.services.datasets import get_dataset

log = logging.getLogger(__name__)

SLICE = 256  # texts per progress report
Progress = Callable[[int, int], None]  # (done, total)


def _embed(embedder, texts: list[str], progress: Progress | None) -> np.ndarray:
    vectors = np.empty((len(texts), embedder.dim), dtype=np.float32)
    for start in range(0, len(texts), SLICE):
        end = min(start + SLICE, len(texts))
        vectors[start:end] = embedder.embed_documents(texts[start:end])
        if progress is not None:
            progress(end, len(texts))
    return vectors


def reembed_dataset(
    rt: Runtime, dataset_id: int, variant: str | None = None, *, progress: Progress | None = None
) -> DatasetRecord:
    """Remake every vector of the dataset with `variant` (default: the model's default) and record that variant."""
    dataset = get_dataset(rt, dataset_id)
    embedder = rt.registry.embedder(dataset.embed_model, variant=variant)
    if embedder.dim != dataset.embed_dim:
        raise Unprocessable(
            f"The '{embedder.variant}' variant of '{dataset.embed_model}' gives {embedder.dim}-dimensional vectors but "
            f"this dataset holds {dataset.embed_dim}-dimensional ones; create a new dataset instead.",
            code="embedding_dimension_changed",
        )
    clock = time.perf_counter()
    with rt.db.session() as session:
        snapshot = chunk_store.embedded_texts(session, dataset_id)
    ids = list(snapshot)
    vectors = _embed(embedder, [snapshot[i] for i in ids], progress)
    with rt.db.session() as session:
        dataset_store.lock_embedder(session, dataset_id, exclusive=True)
        now = chunk_store.embedded_texts(session, dataset_id)
        late = [i for i, q in now.items() if snapshot.get(i) != q]  # added or edited while we were embedding
        kept = [n for n, i in enumerate(ids) if i in now and i not in late]
        chunk_store.set_embeddings(session, [ids[n] for n in kept], vectors[kept])
        if late:
            chunk_store.set_embeddings(session, late, embedder.embed_documents([now[i] for i in late]))
        dataset_store.update_dataset(session, dataset_id, embed_variant=embedder.variant)
        session.commit()
    log.info(
        "Re-embedded dataset '%s' with %s (%s): %d chunks in %.1f s",
        dataset.name,
        dataset.embed_model,
        embedder.variant,
        len(kept) + len(late),
        time.perf_counter() - clock,
    )
    return get_dataset(rt, dataset_id)
