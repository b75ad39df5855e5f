"""Evaluation-run benchmark: a search-only run of N questions over a dataset of M chunks, carried out by the
worker exactly as the admin's "Start run" does, against the same questions asked in a plain loop of
`search_datasets` (bench/retrieval.py's `run_modes`) in the same process as the baseline.

    PYTHONPATH=. python bench/eval.py                          # 1,000 questions, 10,000 chunks, hybrid
    PYTHONPATH=. python bench/eval.py --questions 400 --chunks 0 --modes hybrid,vector
    PYTHONPATH=. python bench/eval.py --smoke                   # seconds: that it still runs

The dataset is the squad kit as an upload in the admin makes it (`bench.kit_ingest.ingest_kit`: kb's
worker reads, chunks and embeds each document with the default embedder) padded with synthetic chunks to
`--chunks` (80 kit words and a random unit vector each, stored by kb's chunk store); the kit's 400
questions are cycled to reach `--questions`. Prints wall time, questions per second, the run's
overhead over the plain loop, and hit@1/hit@5 of both (they must agree).
"""

from __future__ import annotations

import argparse
import json
import re
import time

import numpy as np
from sqlalchemy import text

from bench.kit_ingest import ingest_kit
from bench.retrieval import CACHE, fresh_database, load_questions, run_modes, shared_data
from kb.config import Settings
from kb.db.engine import Database
from kb.db.store import chunks as chunk_store
from kb.db.store import collections as collection_store
from kb.db.store import datasets as dataset_store
from kb.ml.registry import get_registry
from kb.runtime import Runtime
from kb.services import eval_runs, evals
from kb.worker.loop import Worker


def pad_with_synthetic(session, dataset_id: int, dim: int, count: int, words: list[str]) -> None:
    """`count` chunks of 80 words drawn from the kit and random unit vectors, stored the way ingestion stores
    chunks (kb's full-text column included); seeded, so every run pads alike."""
    rng = np.random.default_rng(42)
    collection, _ = collection_store.add_collection(
        session, dataset_id=dataset_id, name="synthetic", source_type="text", content_hash="synthetic", status="ready"
    )
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    picks = rng.integers(0, len(words), size=(count, 80))
    chunk_store.add_chunks(
        session,
        dataset_id,
        collection.id,
        [
            chunk_store.NewChunk(q=" ".join(words[i] for i in row), embedding=vector, position=n, token_count=100)
            for n, (row, vector) in enumerate(zip(picks, vectors))
        ],
    )


def build(rt: Runtime, chunks: int, max_docs: int | None = None) -> int:
    """The squad kit's dataset as kb ingests an upload, padded with synthetic chunks to `chunks`, its HNSW index
    rebuilt and analysed."""
    kit = shared_data() / "squad_dev_kit"
    embedder = rt.registry.embedder()
    dataset_id = ingest_kit(rt, kit, max_docs)
    with rt.db.session() as session:
        kit_chunks = dataset_store.chunk_count(session, dataset_id)
    if chunks > kit_chunks:
        words = [w for doc in sorted((kit / "docs").glob("*.md")) for w in re.findall(r"\w+", doc.read_text("utf-8"))]
        with rt.db.session() as session:  # one index build after the insert, not an HNSW insert per row
            dataset_store.drop_vector_index(session, dataset_id)
            pad_with_synthetic(session, dataset_id, embedder.dim, chunks - kit_chunks, words)
            session.execute(text("SET maintenance_work_mem = '512MB'"))
            dataset_store.ensure_vector_index(session, dataset_id, embedder.dim)
            session.commit()
    with rt.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE chunk"))
    return dataset_id


def timed_run(rt: Runtime, set_id: int, mode: str) -> tuple[float, dict]:
    started = time.perf_counter()
    run = eval_runs.start_run(rt, set_id, eval_runs.RunConfig(mode=mode))
    Worker(rt, jobs=1).run_until_idle()
    elapsed = time.perf_counter() - started
    finished = eval_runs.get_run(rt, run.id)
    assert finished.status == "done", finished
    return elapsed, finished.totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--modes", default="hybrid")
    parser.add_argument("--smoke", action="store_true", help="2 documents, their questions, no padding (seconds)")
    args = parser.parse_args()
    max_docs = 2 if args.smoke else None
    if args.smoke:
        args.chunks = 0

    url = fresh_database()
    settings = Settings(_env_file=None, database_url=url, data_dir=CACHE / "data", worker_poll_seconds=0.2)
    rt = Runtime(settings, Database(url), get_registry(settings))
    dataset_id = build(rt, args.chunks, max_docs)
    kit_questions = load_questions(shared_data() / "squad_dev_kit")
    if args.smoke:
        with rt.db.session() as session:
            docs = {c.name for c in collection_store.list_collections(session, dataset_id)[0]}
        kit_questions = [q for q in kit_questions if q.doc in docs]
        args.questions = len(kit_questions)
    questions = [kit_questions[i % len(kit_questions)] for i in range(args.questions)]
    lines = "\n".join(json.dumps({"question": q.question, "answers": q.answers, "source": q.doc}) for q in questions)
    eval_set = evals.create_set(rt, dataset_id, "bench")
    evals.import_items(rt, eval_set.id, "bench.jsonl", lines.encode())
    with rt.db.session() as session:
        total_chunks = dataset_store.chunk_count(session, dataset_id)
    print(f"{len(questions)} questions over {total_chunks} chunks, embedder {rt.registry.embedder().name}\n")
    print("| mode | plain loop s | eval run s | run q/s | overhead | loop hit@1/hit@5 | run hit@1/hit@5 |")
    print("| --- | ---: | ---: | ---: | ---: | --- | --- |")
    for mode in args.modes.split(","):
        started = time.perf_counter()
        loop = run_modes(rt, dataset_id, questions, (mode,))[mode]
        loop_s = time.perf_counter() - started
        run_s, totals = timed_run(rt, eval_set.id, mode)
        print(
            f"| {mode} | {loop_s:.1f} | {run_s:.1f} | {len(questions) / run_s:.1f} | {run_s / loop_s:.2f}x "
            f"| {loop['hit@1']:.3f}/{loop['hit@5']:.3f} | {totals['hit@1']:.3f}/{totals['hit@5']:.3f} |"
        )
    rt.db.dispose()


if __name__ == "__main__":
    main()
