"""Retrieval benchmark: kb's vector / fulltext / hybrid search against a BM25 paragraph baseline.

    PYTHONPATH=. python bench/retrieval.py                   # both kits, every mode
    PYTHONPATH=. python bench/retrieval.py --scale 10000,200000

For each kit in shared/data (squad_dev_kit, cmrc_dev_kit) it builds a dataset the way an upload in the
admin does (bench/kit_ingest.py: files ingested by kb's worker, default embedder, the chunk size an
upload gets; not cached, a run re-embeds), then asks every question through
`kb.services.search.search_datasets` and reports hit@1, hit@5, MRR@5, latency (p50/p95, including
the query embedding) and the mean quote length. "hit@k": one of the first k quotes contains a gold
answer string. The BM25 baseline ranks whole paragraphs with a plain Python BM25 over jieba words
(Chinese) or lower-cased words (English).

`--scale N,...` puts both kits into one dataset, grows it with synthetic chunks in both languages to
each size N (bench/scale_corpus.py says how they are made), and reports what bench/retrieval_scale.py
measures there: HNSW build time and size, hybrid p50/p95 with 1 and 20 clients, memory, database size,
and hit@1/hit@5 of kb's search against exact BM25 fusion on the same corpus. `--questions` caps the
questions asked per kit in the scale run.
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
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import psycopg  # noqa: E402
from sqlalchemy import text  # noqa: E402

from bench.kit_ingest import ingest_kit  # noqa: E402
from kb.config import Settings  # noqa: E402
from kb.db.engine import Database, libpq_url, sqlalchemy_url, start_embedded_server  # noqa: E402
from kb.db.migrate import upgrade  # noqa: E402
from kb.db.store import chunks as chunk_store  # noqa: E402
from kb.db.store import datasets as dataset_store  # noqa: E402
from kb.db.tables import Collection  # noqa: E402
from kb.db.textsearch import segment  # noqa: E402
from kb.ml.registry import get_registry  # noqa: E402
from kb.runtime import Runtime  # noqa: E402
from kb.services.datasets import default_chunk_tokens  # noqa: E402
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
    (pass the embedder's `default_chunk_tokens` as `max_tokens` to get exactly the chunks an upload gets)."""
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
    """Document embeddings, computed once per (model, texts) and kept under bench/.cache (the default int8
    embedder runs every text alone, so these are the very vectors ingestion gives the same texts)."""
    key = hashlib.sha256("\x00".join([embedder.name, embedder.variant, *texts]).encode()).hexdigest()[:20]
    path = CACHE / f"embeddings-{key}.npy"
    if path.exists():
        return np.load(path)
    vectors = embedder.embed_documents(texts)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def fresh_database(keep: bool = False) -> str:
    """A new, migrated `kb_bench` database on KB_BENCH_DATABASE_URL's server or an embedded one (`keep`: the last one)."""
    server_url = os.environ.get("KB_BENCH_DATABASE_URL")
    if not server_url:
        server_url = start_embedded_server(CACHE / "pg").get_uri()
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        if not keep:
            conn.execute('DROP DATABASE IF EXISTS "kb_bench" WITH (FORCE)')
            conn.execute('CREATE DATABASE "kb_bench"')
    from sqlalchemy import make_url

    url = sqlalchemy_url(make_url(libpq_url(server_url)).set(database="kb_bench").render_as_string(hide_password=False))
    upgrade(url)
    return url


def store_pieces(
    db: Database, name: str, embedder, pieces: list[Piece], vectors: np.ndarray, *, into: int | None = None
) -> int:
    """One ready collection per document, in a new dataset `name` or in dataset `into`; returns the dataset id."""
    if into is None:
        with db.session() as session:
            into = dataset_store.add_dataset(
                session, name=name, embed_model=embedder.name, embed_dim=embedder.dim, embed_variant=embedder.variant
            ).id
            session.commit()
    dataset_id = into
    with db.session() as session:
        by_doc: dict[str, list[int]] = {}
        for index, piece in enumerate(pieces):
            by_doc.setdefault(piece.doc, []).append(index)
        for doc, indexes in by_doc.items():
            collection = Collection(
                dataset_id=dataset_id, name=doc, source_type="file", content_hash=doc, status="ready"
            )
            session.add(collection)
            session.flush()
            chunk_store.add_chunks(
                session,
                dataset_id,
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
    return dataset_id


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


def grow_and_measure(rt: Runtime, exact: Runtime, embedder, kits: dict, sizes: list[int], asked: dict, pg_dir):
    """Both kits in one new dataset, grown with filler to each size and measured there."""
    import retrieval_scale
    import scale_corpus

    data = shared_data()
    dataset_id = None
    for pieces, vectors, _ in kits.values():
        dataset_id = store_pieces(rt.db, "scale", embedder, pieces, vectors, into=dataset_id)
    filler = scale_corpus.Filler(
        scale_corpus.english_vocabulary(data / "squad_dev_kit"),
        scale_corpus.chinese_vocabulary(data / "cmrc_dev_kit"),
        embedder.dim,
    )
    with rt.db.session() as session:
        collection = Collection(
            dataset_id=dataset_id, name="filler", source_type="text", content_hash="filler", status="ready"
        )
        session.add(collection)
        session.commit()
        collection_id = collection.id
    kit_chunks = sum(len(pieces) for pieces, _, _ in kits.values())
    rows, added = [], 0
    for size in sizes:
        missing = max(0, size - kit_chunks - added)
        with rt.db.session() as session:  # filling a live HNSW index costs ms per row; measure() rebuilds it
            dataset_store.drop_vector_index(session, dataset_id)
            session.commit()
        with psycopg.connect(libpq_url(rt.db.url)) as conn:
            scale_corpus.add_filler(conn, filler, dataset_id, collection_id, added, missing)
        added += missing
        rows.append(retrieval_scale.measure(rt, exact, dataset_id, embedder.dim, asked, Score, pg_dir))
        retrieval_scale.print_rows(rows[-1:], list(asked))
    return rows


def scale_run(rt: Runtime, embedder, kits: dict[str, tuple], sizes: list[int], questions: int) -> None:
    """Both kits in one dataset grown with filler to each size (none: the last run's), measured there."""
    import retrieval_scale

    exact = Runtime(rt.settings.model_copy(update={"fulltext_pruning": False}), rt.db, rt.registry)
    asked = {kit: kit_questions[:questions] for kit, (_, _, kit_questions) in kits.items()}
    pg_dir = None if os.environ.get("KB_BENCH_DATABASE_URL") else CACHE / "pg"
    if not sizes:  # --remeasure: the corpus of the last run, its indexes as they are
        with rt.db.session() as session:
            dataset_id = dataset_store.get_dataset_by_name(session, "scale").id
        rows = [retrieval_scale.measure(rt, exact, dataset_id, embedder.dim, asked, Score, pg_dir, build=False)]
    else:
        rows = grow_and_measure(rt, exact, embedder, kits, sizes, asked, pg_dir)
    print(
        f"\nAll sizes ({len(asked)} kits, up to {questions} questions each; filler vectors: hashing-trick, not a model):"
    )
    retrieval_scale.print_rows(rows, list(asked))


def smoke_sample(kit: Path, questions: list[Question], docs: int = 3, count: int = 10) -> list[Question]:
    """A smoke run's few questions: those about the first `docs` documents (`--smoke` proves the script runs)."""
    kept = {doc.name for doc in sorted((kit / "docs").glob("*.md"))[:docs]}
    return [q for q in questions if q.doc in kept][:count]


def kit_table(rt: Runtime, exact: Runtime, kit: Path, questions: list[Question], max_docs: int | None) -> None:
    """The kit uploaded and ingested by kb, each question asked in every mode (and BM25's); prints the table."""
    dataset_id = ingest_kit(rt, kit, max_docs)
    with rt.db.session() as session:
        chunks = dataset_store.chunk_count(session, dataset_id)
    search_datasets(rt, [dataset_id], "warm-up", mode="hybrid", limit=TOP)
    rows = {"BM25 paragraphs (Python)": bm25_baseline(kit, questions), **run_modes(rt, dataset_id, questions)}
    exact_rows = run_modes(exact, dataset_id, questions, modes=("fulltext", "hybrid"))
    rows.update({f"{mode} (exact BM25)": row for mode, row in exact_rows.items()})
    cap = default_chunk_tokens(rt.registry.embedder())
    print_table(kit.name, f"uploaded and ingested by kb's worker ({cap}-token chunks, 15% overlap)", chunks, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kits", default=",".join(KITS), help="comma-separated kit folders in shared/data")
    parser.add_argument(
        "--scale", default="", help="comma-separated corpus sizes for the scale run, e.g. 200000,1000000"
    )
    parser.add_argument("--questions", type=int, default=200, help="questions per kit in the scale run")
    parser.add_argument("--skip-kit-tables", action="store_true", help="only the scale run")
    parser.add_argument("--remeasure", action="store_true", help="measure the last scale run's corpus again")
    parser.add_argument("--smoke", action="store_true", help="a few documents and questions of one kit, in seconds")
    args = parser.parse_args()
    max_docs = 3 if args.smoke else None
    if args.smoke:
        args.kits = args.kits.split(",")[0]

    url = fresh_database(keep=args.remeasure)
    settings = Settings(_env_file=None, database_url=url, data_dir=CACHE / "data")
    db = Database(url)
    rt = Runtime(settings, db, get_registry(settings))
    exact = Runtime(settings.model_copy(update={"fulltext_pruning": False}), db, rt.registry)
    embedder = rt.registry.embedder()
    data = shared_data()
    print(f"embedder: {embedder.name} ({embedder.dim}-d, {embedder.variant}); top {TOP}")
    kits = {}
    for kit_name in args.kits.split(","):
        kit = data / kit_name
        questions = smoke_sample(kit, load_questions(kit)) if args.smoke else load_questions(kit)
        if args.scale or args.remeasure:  # the scale corpus is stored directly: both kits plus filler in one dataset
            pieces, _ = chunk_kit(kit, embedder.count_tokens, max_docs, default_chunk_tokens(embedder))
            kits[kit_name] = (pieces, embed_cached(embedder, [p.text for p in pieces]), questions)
        else:
            kits[kit_name] = ([], None, questions)
        if not (args.skip_kit_tables or args.remeasure):
            kit_table(rt, exact, kit, questions, max_docs)
    if args.scale or args.remeasure:
        sizes = [] if args.remeasure else sorted(int(s) for s in args.scale.split(","))
        scale_run(rt, embedder, kits, sizes, args.questions)
    db.dispose()


if __name__ == "__main__":
    main()
