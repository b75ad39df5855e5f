"""Retrieval benchmark: kb's vector / fulltext / hybrid search against a BM25 paragraph baseline.

    PYTHONPATH=. python bench/retrieval.py                   # both kits, every mode
    PYTHONPATH=. python bench/retrieval.py --scale 10000,200000

For each kit in shared/data (squad_dev_kit, cmrc_dev_kit) it builds a dataset with kb's own store
(documents chunked with kb's chunker when it is installed, else one chunk per paragraph; embedded
with the bundled all-MiniLM-L6-v2, cached under bench/.cache), then asks every question through
`kb.services.search.search_datasets` and reports hit@1, hit@5, MRR@5, latency (p50/p95, including
the query embedding) and the mean quote length. "hit@k": one of the first k quotes contains a gold
answer string. The BM25 baseline ranks whole paragraphs with a plain Python BM25 over jieba words
(Chinese) or lower-cased words (English).

`--scale N,...` adds N synthetic chunks (random unit vectors, text sampled from the squad kit's words)
to the squad dataset and reports HNSW build time, index size, hybrid p95 and hit@5 at each size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# OpenMP threads that spin while waiting fight every other process on a shared machine: one query's
# embedding took ~1.5 s at load 14 with torch's default (active) waiting and ~15 ms with passive waiting.
# It must be set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import psycopg  # noqa: E402
from sqlalchemy import text  # noqa: E402

from kb.config import Settings  # noqa: E402
from kb.db.engine import Database, libpq_url, sqlalchemy_url, start_embedded_server  # noqa: E402
from kb.db.migrate import upgrade  # noqa: E402
from kb.db.store import chunks as chunk_store  # noqa: E402
from kb.db.store import datasets as dataset_store  # noqa: E402
from kb.db.tables import Collection  # noqa: E402
from kb.db.textsearch import segment  # noqa: E402
from kb.ml.registry import get_registry  # noqa: E402
from kb.runtime import Runtime  # noqa: E402
from kb.services.datasets import token_cap  # noqa: E402
from kb.services.search import search_datasets  # noqa: E402

CACHE = REPO / "bench" / ".cache"
KITS = ("squad_dev_kit", "cmrc_dev_kit")
MODES = ("vector", "fulltext", "hybrid")
TOP = 5


@dataclass(frozen=True)
class Question:
    question: str
    answers: list[str]
    doc: str
    paragraph_index: int


@dataclass(frozen=True)
class Piece:
    """A chunk to store: its text, heading and the document it came from."""

    doc: str
    text: str
    heading: str
    position: int


def shared_data() -> Path:
    for candidate in (os.environ.get("KB_SHARED_DATA"), REPO.parent / "shared" / "data", "/work/shared/data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    raise SystemExit("shared/data not found; set KB_SHARED_DATA")


def load_questions(kit: Path) -> list[Question]:
    rows = [json.loads(line) for line in (kit / "questions.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return [Question(r["question"], r["answers"], r["doc"], r["paragraph_index"]) for r in rows]


def paragraphs(doc: Path) -> tuple[str, list[str]]:
    """A kit document's title and paragraphs (the file is `# title`, then paragraphs split by blank lines)."""
    blocks = [b.strip() for b in doc.read_text(encoding="utf-8").split("\n\n") if b.strip()]
    return blocks[0].lstrip("# ").strip(), blocks[1:]


def chunk_kit(kit: Path, count_tokens, max_docs: int | None = None, max_tokens: int = 256) -> tuple[list[Piece], str]:
    """The kit's documents (the first `max_docs` of them) as kb's reader and chunker cut them on upload
    (pass the embedder's `token_cap` as `max_tokens` to get exactly the chunks an upload gets)."""
    from kb.ingest.chunking import chunk_document
    from kb.ingest.reading import read_document

    pieces = []
    for doc in sorted((kit / "docs").glob("*.md"))[:max_docs]:
        drafts = chunk_document(
            read_document(doc.read_bytes(), doc.name), count_tokens=count_tokens, max_tokens=max_tokens
        )
        pieces.extend(Piece(doc.name, d.q, d.heading, i) for i, d in enumerate(drafts))
    return pieces, f"kb.ingest.chunking.chunk_document ({max_tokens} tokens, 15% overlap)"


def embed_cached(embedder, texts: list[str]) -> np.ndarray:
    """Document embeddings, computed once per (model, texts) and kept under bench/.cache."""
    key = hashlib.sha256("\x00".join([embedder.name, embedder.variant, *texts]).encode()).hexdigest()[:20]
    path = CACHE / f"embeddings-{key}.npy"
    if path.exists():
        return np.load(path)
    vectors = embedder.embed_documents(texts)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def fresh_database() -> str:
    """A new, migrated `kb_bench` database on KB_BENCH_DATABASE_URL's server or an embedded one."""
    server_url = os.environ.get("KB_BENCH_DATABASE_URL")
    if not server_url:
        server_url = start_embedded_server(CACHE / "pg").get_uri()
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "kb_bench" WITH (FORCE)')
        conn.execute('CREATE DATABASE "kb_bench"')
    from sqlalchemy import make_url

    url = sqlalchemy_url(make_url(libpq_url(server_url)).set(database="kb_bench").render_as_string(hide_password=False))
    upgrade(url)
    return url


def store_pieces(db: Database, name: str, embedder, pieces: list[Piece], vectors: np.ndarray) -> int:
    """A dataset holding one ready collection per document; returns the dataset id."""
    with db.session() as session:
        dataset = dataset_store.add_dataset(
            session, name=name, embed_model=embedder.name, embed_dim=embedder.dim, embed_variant=embedder.variant
        )
        by_doc: dict[str, list[int]] = {}
        for index, piece in enumerate(pieces):
            by_doc.setdefault(piece.doc, []).append(index)
        for doc, indexes in by_doc.items():
            collection = Collection(
                dataset_id=dataset.id, name=doc, source_type="file", content_hash=doc, status="ready"
            )
            session.add(collection)
            session.flush()
            chunk_store.add_chunks(
                session,
                dataset.id,
                collection.id,
                [
                    chunk_store.NewChunk(
                        q=pieces[i].text,
                        heading=pieces[i].heading,
                        position=pieces[i].position,
                        embedding=vectors[i],
                        token_count=embedder.count_tokens(pieces[i].text),
                    )
                    for i in indexes
                ],
            )
        session.commit()
        session.execute(text("ANALYZE chunk"))
        return dataset.id


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


@dataclass
class Score:
    hits1: int = 0
    hits5: int = 0
    rr: float = 0.0
    n: int = 0

    def add(self, texts: list[str], answers: list[str]) -> None:
        first = next((i for i, t in enumerate(texts[:TOP], 1) if any(a in t for a in answers)), None)
        self.n += 1
        self.hits1 += first == 1
        self.hits5 += first is not None
        self.rr += 1 / first if first else 0.0

    def row(self) -> tuple[float, float, float]:
        return self.hits1 / self.n, self.hits5 / self.n, self.rr / self.n


def run_modes(deps, dataset_id: int, questions: list[Question], modes=MODES) -> dict[str, dict]:
    """Every question through kb's search in each mode: scores, latencies and quote lengths."""
    report = {}
    for mode in modes:
        score, latencies, lengths, parts = Score(), [], [], Counter()
        for question in questions:
            started = time.perf_counter()
            result = search_datasets(deps, [dataset_id], question.question, mode=mode, limit=TOP)
            latencies.append((time.perf_counter() - started) * 1000)
            parts.update({k: v for k, v in result.timings.items() if k != "total_ms"})
            texts = [q.text for q in result.quotes]
            lengths.extend(len(t) for t in texts)
            score.add(texts, question.answers)
        hit1, hit5, mrr = score.row()
        report[mode] = {
            "hit@1": hit1,
            "hit@5": hit5,
            "MRR@5": mrr,
            "p50 ms": statistics.median(latencies),
            "p95 ms": percentile(latencies, 0.95),
            "quote chars": statistics.mean(lengths) if lengths else 0.0,
            "mean ms by step": {k: round(v / len(questions), 1) for k, v in parts.items()},
        }
    return report


_WORD = re.compile(r"\w+", re.UNICODE)


def bm25_tokens(text_: str) -> list[str]:
    """Lower-cased words, Chinese runs segmented with jieba (search mode), as the baseline sees them."""
    return [w.lower() for w in _WORD.findall(segment(text_))]


def bm25_baseline(kit: Path, questions: list[Question]) -> dict:
    """A plain BM25 (k1 1.2, b 0.75) over the kit's paragraphs, each question against every paragraph."""
    docs = []
    for doc in sorted((kit / "docs").glob("*.md")):
        docs.extend(paragraphs(doc)[1])
    tokens = [Counter(bm25_tokens(d)) for d in docs]
    lengths = [sum(t.values()) for t in tokens]
    avgdl = sum(lengths) / len(lengths)
    df = Counter(term for t in tokens for term in t)
    n = len(docs)
    score, latencies, returned = Score(), [], []
    for question in questions:
        started = time.perf_counter()
        terms = set(bm25_tokens(question.question))
        idf = {t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in terms if df[t]}
        scores = [
            sum(idf[t] * tf[t] * 2.2 / (tf[t] + 1.2 * (0.25 + 0.75 * dl / avgdl)) for t in idf if t in tf)
            for tf, dl in zip(tokens, lengths)
        ]
        best = sorted(range(n), key=lambda i: -scores[i])[:TOP]
        latencies.append((time.perf_counter() - started) * 1000)
        score.add([docs[i] for i in best], question.answers)
        returned.extend(len(docs[i]) for i in best)
    hit1, hit5, mrr = score.row()
    return {
        "hit@1": hit1,
        "hit@5": hit5,
        "MRR@5": mrr,
        "p50 ms": statistics.median(latencies),
        "p95 ms": percentile(latencies, 0.95),
        "quote chars": statistics.mean(returned),
    }


def steps(row: dict) -> str:
    return ", ".join(f"{k.removesuffix('_ms')} {v}" for k, v in row.get("mean ms by step", {}).items())


def print_table(kit: str, chunking: str, chunks: int, rows: dict[str, dict]) -> None:
    print(f"\n### {kit} ({chunks} chunks; {chunking})\n")
    columns = ["hit@1", "hit@5", "MRR@5", "p50 ms", "p95 ms", "quote chars"]
    print("| mode | " + " | ".join(columns) + " | mean ms by step |")
    print("| --- |" + " ---: |" * len(columns) + " --- |")
    for mode, row in rows.items():
        cells = [f"{row[c]:.3f}" if c.startswith(("hit", "MRR")) else f"{row[c]:.1f}" for c in columns]
        print(f"| {mode} | " + " | ".join(cells) + f" | {steps(row)} |")


def add_synthetic(db: Database, dataset_id: int, dim: int, count: int, vocabulary: list[str]) -> None:
    """`count` chunks of random unit vectors and 80 words drawn from the kit's word frequencies, in SQL."""
    with db.session() as session:
        collection = Collection(
            dataset_id=dataset_id,
            name=f"synthetic-{count}",
            source_type="text",
            content_hash=f"syn{count}",
            status="ready",
        )
        session.add(collection)
        session.flush()
        session.execute(text("SELECT setseed(0.42)"))
        session.execute(
            text(
                f"""
                INSERT INTO chunk (dataset_id, collection_id, position, q, token_count, embedding, fts)
                SELECT {int(dataset_id)}, :collection, g, t.body, 100, v.vec, to_tsvector('english', t.body)
                FROM generate_series(1, :count) g,
                LATERAL (SELECT array_to_string(ARRAY(
                    SELECT (CAST(:vocab AS text[]))[1 + floor(random() * :nv)::int]
                    FROM generate_series(1, 80) WHERE g > 0), ' ') AS body) t,
                LATERAL (SELECT l2_normalize(CAST(ARRAY(
                    SELECT random() - 0.5 FROM generate_series(1, {int(dim)}) WHERE g > 0) AS vector)) AS vec) v
                """
            ),
            {"collection": collection.id, "count": count, "vocab": vocabulary, "nv": len(vocabulary)},
        )
        session.commit()


def scale_run(
    db: Database, deps, dataset_id: int, embedder, questions: list[Question], sizes: list[int], kit: Path
) -> None:
    """HNSW build time, index size and hybrid latency as synthetic chunks are added."""
    vocabulary = [w for doc in sorted((kit / "docs").glob("*.md")) for w in _WORD.findall(doc.read_text("utf-8"))]
    sample = questions[:200]
    print("\n### scale (squad dataset + synthetic chunks; hybrid, 200 questions)\n")
    print("| chunks | HNSW build s | index MB | hybrid p50 ms | hybrid p95 ms | hit@5 | mean ms by step |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    added = 0
    for size in sizes:
        with db.session() as session:
            base = session.execute(text(f"SELECT count(*) FROM chunk WHERE dataset_id = {dataset_id}")).scalar()
        if size > base:
            with db.session() as session:
                dataset_store.drop_vector_index(session, dataset_id)
                session.commit()
            add_synthetic(db, dataset_id, embedder.dim, size - base, vocabulary)
            added += size - base
        with db.session() as session:
            session.execute(text("SET maintenance_work_mem = '512MB'"))
            dataset_store.drop_vector_index(session, dataset_id)
            started = time.perf_counter()
            dataset_store.ensure_vector_index(session, dataset_id, embedder.dim)
            session.commit()
            build = time.perf_counter() - started
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE chunk"))
            index_bytes = session.execute(
                text(f"SELECT pg_relation_size('{dataset_store.vector_index_name(dataset_id)}')")
            ).scalar()
            total = session.execute(text(f"SELECT count(*) FROM chunk WHERE dataset_id = {dataset_id}")).scalar()
        row = run_modes(deps, dataset_id, sample, modes=("hybrid",))["hybrid"]
        print(
            f"| {total} | {build:.1f} | {index_bytes / 2**20:.0f} | {row['p50 ms']:.1f} | {row['p95 ms']:.1f} "
            f"| {row['hit@5']:.3f} | {steps(row)} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kits", default=",".join(KITS), help="comma-separated kit folders in shared/data")
    parser.add_argument(
        "--scale", default="", help="comma-separated dataset sizes for the scale run, e.g. 10000,200000"
    )
    args = parser.parse_args()

    url = fresh_database()
    settings = Settings(_env_file=None, database_url=url, data_dir=CACHE / "data")
    db = Database(url)
    deps = Runtime(settings, db, get_registry(settings))
    embedder = get_registry(settings).embedder()
    data = shared_data()
    print(f"embedder: {embedder.name} ({embedder.dim}-d, {embedder.variant}); top {TOP}")
    squad_id = None
    for kit_name in args.kits.split(","):
        kit = data / kit_name
        questions = load_questions(kit)
        pieces, chunking = chunk_kit(kit, embedder.count_tokens, max_tokens=token_cap(embedder))
        vectors = embed_cached(embedder, [p.text for p in pieces])
        dataset_id = store_pieces(db, kit_name, embedder, pieces, vectors)
        search_datasets(deps, [dataset_id], "warm-up", mode="hybrid", limit=TOP)
        rows = {"BM25 paragraphs (Python)": bm25_baseline(kit, questions), **run_modes(deps, dataset_id, questions)}
        print_table(kit_name, chunking, len(pieces), rows)
        if kit_name == "squad_dev_kit":
            squad_id = dataset_id
    if args.scale:
        if squad_id is None:
            raise SystemExit("--scale needs the squad_dev_kit")
        sizes = sorted(int(s) for s in args.scale.split(","))
        scale_run(db, deps, squad_id, embedder, load_questions(data / "squad_dev_kit"), sizes, data / "squad_dev_kit")
    db.dispose()


if __name__ == "__main__":
    main()
