"""A kit's documents in a new dataset, made exactly as an upload in the admin makes it: files added to the
dataset, then read, chunked, embedded and stored by kb's worker (`kb.services.ingest.ingest_collection`).

The benchmarks that compare with what users see build their datasets here (bench/retrieval.py's kit
tables, bench/eval.py), so a figure they print is a figure a user's evaluation run can reproduce.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import text

from kb.runtime import Runtime
from kb.schemas import ChunkSettings, DatasetCreate
from kb.services import collections as collection_service
from kb.services import datasets as dataset_service
from kb.services.collections import Upload
from kb.services.datasets import default_chunk_tokens
from kb.worker.loop import Worker


def ingest_kit(
    rt: Runtime,
    kit: Path,
    max_docs: int | None = None,
    *,
    docs: Sequence[str] | None = None,
    max_tokens: int | None = None,
    name: str | None = None,
) -> int:
    """A new dataset holding the kit's documents (the first `max_docs`, or those named in `docs`), uploaded and
    ingested by kb's worker as an upload in the admin is: read, chunked at `max_tokens` (default: the size an upload
    gets, `default_chunk_tokens`), embedded and stored by `ingest_collection`. What the benchmark measures is then what kb
    serves; returns the dataset id."""
    cap = max_tokens or default_chunk_tokens(rt.registry.embedder())
    dataset = dataset_service.create_dataset(
        rt, DatasetCreate(name=name or kit.name, chunk_settings=ChunkSettings(max_tokens=cap))
    )
    paths = sorted((kit / "docs").glob("*.md"))
    for doc in [p for p in paths if p.name in docs] if docs is not None else paths[:max_docs]:
        with doc.open("rb") as handle:
            collection_service.add_file(rt, dataset.id, Upload(doc.name, handle))
    Worker(rt).run_until_idle()
    collections, _ = collection_service.list_collections(rt, dataset.id, limit=1000)
    failed = [f"{c.name}: {c.status} {c.error or ''}" for c in collections if c.status != "ready"]
    if failed:
        raise SystemExit("ingestion did not finish: " + "; ".join(failed))
    with rt.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE chunk"))
    return dataset.id
