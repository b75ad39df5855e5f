"""The scale part of `bench/retrieval.py --scale N,...`: the kits inside a big corpus, measured at each size.

One dataset holds both kits' chunks (real embedder) and synthetic filler (bench/scale_corpus.py) up to
N chunks. At each size: HNSW build time and size (rebuilt from scratch), the full-text refresh (statistics
and postings blocks, kb.db.store.postings), then hybrid search of the kits' questions with kb's full text
(candidates from the postings blocks) and with exact BM25 (the baseline, same run, same corpus): hit@1/hit@5,
p50/p95 and the mean time of each search step for one client; p50/p95 and searches/s with 20 clients in
threads calling kb's search service (the per-process search gate included, HTTP not), right after kb's
one-client pass (before the exact pass, which leaves the cache cold); memory (this process' RSS,
PostgreSQL's PSS summed over its processes), the postings' size and the database size.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from sqlalchemy import text

from kb.db.store import datasets as dataset_store
from kb.db.store import fulltext_stats
from kb.runtime import Runtime
from kb.services.search import search_datasets

CLIENTS = 20


STEPS = ("embed_ms", "vector_ms", "fulltext_ms", "complete_ms")


def _search_ms(rt: Runtime, dataset_id: int, question, steps: dict | None = None) -> tuple[float, list[str]]:
    started = time.perf_counter()
    result = search_datasets(rt, [dataset_id], question.question, mode="hybrid", limit=5)
    for step in STEPS if steps is not None else ():
        steps.setdefault(step, []).append(result.timings.get(step, 0.0))
    return (time.perf_counter() - started) * 1000, [q.text for q in result.quotes]


def _one_client(rt: Runtime, dataset_id: int, questions, score_class, steps: dict) -> tuple[object, list[float]]:
    score, latencies = score_class(), []
    for question in questions:
        elapsed, texts = _search_ms(rt, dataset_id, question, steps)
        latencies.append(elapsed)
        score.add(texts, question.answers)
    return score, latencies


def _many_clients(rt: Runtime, dataset_id: int, questions) -> list[float]:
    with ThreadPoolExecutor(CLIENTS) as pool:
        return [ms for ms, _ in pool.map(lambda q: _search_ms(rt, dataset_id, q), questions)]


def postgres_pss_mb(pg_dir: Path) -> float:
    """Proportional memory of the PostgreSQL server under pg_dir and its backends (shared pages counted once)."""
    postmaster = psutil.Process(int((pg_dir / "postmaster.pid").read_text().split()[0]))
    processes = [postmaster, *postmaster.children(recursive=True)]
    return sum(p.memory_full_info().pss for p in processes) / 2**20


def _build_indexes(db, dataset_id: int, dim: int) -> tuple[float, int, float]:
    with db.session() as session:
        session.execute(text("SET maintenance_work_mem = '4GB'"))
        dataset_store.drop_vector_index(session, dataset_id)
        started = time.perf_counter()
        dataset_store.ensure_vector_index(session, dataset_id, dim)
        session.commit()
        build = time.perf_counter() - started
        started = time.perf_counter()
        fulltext_stats.refresh(session, dataset_id)
        session.commit()
        refresh = time.perf_counter() - started
        index_bytes = session.execute(
            text(f"SELECT pg_relation_size('{dataset_store.vector_index_name(dataset_id)}')")
        ).scalar()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE chunk"))
        conn.execute(text("VACUUM ANALYZE fulltext_block"))
    return build, index_bytes, refresh


def measure(
    rt: Runtime, exact: Runtime, dataset_id: int, dim: int, kits: dict, score_class, pg_dir, build=True
) -> dict:
    """Every figure of one size (see the module docstring); `build` False keeps the indexes as they are."""
    if build:
        build, index_bytes, refresh = _build_indexes(rt.db, dataset_id, dim)
    else:
        build, refresh = float("nan"), float("nan")
        with rt.db.session() as session:
            index_bytes = session.execute(
                text(f"SELECT pg_relation_size('{dataset_store.vector_index_name(dataset_id)}')")
            ).scalar()
    row = {"HNSW build s": build, "HNSW MB": index_bytes / 2**20, "stats refresh s": refresh}
    every = [q for questions in kits.values() for q in questions]
    for question in every:  # steady state: the HNSW graph and the postings read from memory, not disk
        _search_ms(rt, dataset_id, question)
    for name, runtime in (("kb", rt), ("exact", exact)):
        latencies, steps = [], {}
        for kit, questions in kits.items():
            score, spent = _one_client(runtime, dataset_id, questions, score_class, steps)
            latencies += spent
            row[f"{name} {kit} hit@1"], row[f"{name} {kit} hit@5"], _ = score.row()
        row[f"{name} p50 ms"] = statistics.median(latencies)
        row[f"{name} p95 ms"] = sorted(latencies)[int(0.95 * len(latencies)) - 1]
        row[f"{name} steps"] = ", ".join(f"{step} {statistics.mean(ms):.1f}" for step, ms in steps.items())
        if name == "kb":
            # Before the exact pass: exact BM25 reads a chunk row per posting and leaves the cache cold.
            started, crowd = time.perf_counter(), _many_clients(rt, dataset_id, every)
            row["kb 20 clients p50 ms"] = statistics.median(crowd)
            row["kb 20 clients p95 ms"] = sorted(crowd)[int(0.95 * len(crowd)) - 1]
            row["kb 20 clients searches/s"] = len(crowd) / (time.perf_counter() - started)
    with rt.db.session() as session:
        row["chunks"] = session.execute(text(f"SELECT count(*) FROM chunk WHERE dataset_id = {dataset_id}")).scalar()
        row["database MB"] = session.execute(text("SELECT pg_database_size(current_database())")).scalar() / 2**20
        row["postings MB"] = session.execute(text("SELECT pg_total_relation_size('fulltext_block')")).scalar() / 2**20
    row["bench RSS MB"] = psutil.Process().memory_info().rss / 2**20
    row["postgres PSS MB"] = postgres_pss_mb(pg_dir) if pg_dir else float("nan")
    return row


def print_rows(rows: list[dict], kits: list[str]) -> None:
    """One table per concern: cost of the corpus, latency, quality against exact BM25 fusion."""
    print("\n### scale: corpus\n")
    _table(
        rows,
        [
            "chunks",
            "HNSW build s",
            "HNSW MB",
            "stats refresh s",
            "postings MB",
            "database MB",
            "postgres PSS MB",
            "bench RSS MB",
        ],
    )
    print("\n### scale: hybrid latency (ms; kb = pruned full text, exact = exact BM25)\n")
    _table(
        rows,
        [
            "chunks",
            "kb p50 ms",
            "kb p95 ms",
            "exact p50 ms",
            "exact p95 ms",
            "kb 20 clients p50 ms",
            "kb 20 clients p95 ms",
            "kb 20 clients searches/s",
        ],
    )
    for row in rows:
        print(f"\nmean ms by step at {row['chunks']:,} chunks: kb {row['kb steps']}; exact {row['exact steps']}")
    print("\n### scale: quality of the kits' questions inside the corpus (hybrid)\n")
    _table(rows, ["chunks"] + [f"{name} {kit} hit@{k}" for kit in kits for name in ("kb", "exact") for k in (1, 5)])


def _table(rows: list[dict], columns: list[str]) -> None:
    print("| " + " | ".join(columns) + " |")
    print("|" + " ---: |" * len(columns))
    for row in rows:
        cells = [
            f"{row[c]:.3f}" if "hit@" in c else f"{row[c]:,.0f}" if c == "chunks" else f"{row[c]:.1f}" for c in columns
        ]
        print("| " + " | ".join(cells) + " |")
