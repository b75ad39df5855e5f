"""Fusion ablation: the same candidate lists, fused different ways, on both kits.

    PYTHONPATH=. python bench/fusion_ablation.py [--smoke] [--max-tokens N]

`--smoke` runs a few documents and questions of one kit in seconds, so the test suite can tell that the
script still runs (figures from it mean nothing).

Each question is searched once with kb's own SQL (vector and full-text pools of 50, every candidate
scored in both lists, as the search service does); the variants below only differ in how the two
lists become one ranking, so the differences are the fusion's alone. Documents are chunked as an upload
chunks them with the default settings (`default_chunk_tokens`), or at `--max-tokens`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import retrieval as bench

from kb.config import Settings
from kb.db.engine import Database
from kb.db.store import search as search_store
from kb.db.textsearch import segment_query
from kb.ml.registry import get_registry
from kb.rag.retrieval import DENSE_WEIGHT, fuse
from kb.services.datasets import default_chunk_tokens
from kb.services.search import vocabulary_coverage

POOL = 50


def candidate_lists(db, dataset_id: int, embedder, question: str):
    """Both lists for one question, each candidate scored in both, and the embedder's coverage of it."""
    vector = embedder.embed_query(question)
    with db.session() as session:
        vectors = search_store.vector_search(session, dataset_id, vector, limit=POOL)
        fulltext, prepared = search_store.fulltext_search(session, dataset_id, segment_query(question), limit=POOL)
        fulltext.scores_of.update(
            search_store.fulltext_scores(
                session, prepared, [h.chunk_id for h in vectors.hits if h.chunk_id not in fulltext.scores_of]
            )
        )
        vectors.scores_of.update(
            search_store.vector_scores(
                session, dataset_id, vector, [h.chunk_id for h in fulltext.hits if h.chunk_id not in vectors.scores_of]
            )
        )
        session.rollback()
    return vectors, fulltext, vocabulary_coverage(embedder, question)


def rrf(vectors, fulltext, k: int = 60) -> list[str]:
    """Reciprocal-rank fusion: each list adds 1/(k + rank)."""
    scores, texts = {}, {}
    for result in (vectors, fulltext):
        for hit in result.hits:
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + 1 / (k + hit.rank)
            texts[hit.chunk_id] = hit.q
    return [texts[i] for i in sorted(scores, key=lambda i: -scores[i])]


def weighted(vectors, fulltext, weight: float) -> list[str]:
    return [q.text for q in fuse(vectors, fulltext, vector_weights={h.dataset_id: weight for h in vectors.hits})]


VARIANTS = {
    "vector (cosine)": lambda v, f, c: [h.q for h in v.hits],
    "fulltext, BM25 order": lambda v, f, c: [h.q for h in sorted(f.hits, key=lambda h: -h.score)],
    "fulltext, BM25+proximity (kb)": lambda v, f, c: [h.q for h in f.hits],
    "RRF k=60": lambda v, f, c: rrf(v, f),
    "weighted mean, w=0.5 fixed": lambda v, f, c: weighted(v, f, 0.5),
    **{
        f"weighted mean, w={w}·coverage": (lambda v, f, c, w=w: weighted(v, f, w * c))
        for w in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few documents and questions of one kit, in seconds")
    parser.add_argument("--max-tokens", type=int, default=None, help="chunk size (default: the embedder's window)")
    args = parser.parse_args()
    kits, max_docs = (bench.KITS[:1], 3) if args.smoke else (bench.KITS, None)
    url = bench.fresh_database()
    settings = Settings(_env_file=None, database_url=url, data_dir=bench.CACHE / "data")
    db = Database(url)
    embedder = get_registry(settings).embedder()
    data = bench.shared_data()
    for kit_name in kits:
        kit = data / kit_name
        pieces, chunking = bench.chunk_kit(
            kit, embedder.count_tokens, max_docs, args.max_tokens or default_chunk_tokens(embedder)
        )
        dataset_id = bench.store_pieces(
            db, kit_name, embedder, pieces, bench.embed_cached(embedder, [p.text for p in pieces])
        )
        questions = bench.load_questions(kit)
        if args.smoke:
            questions = bench.smoke_sample(kit, questions, max_docs)
        scores = {name: bench.Score() for name in VARIANTS}
        for question in questions:
            lists = candidate_lists(db, dataset_id, embedder, question.question)
            for name, variant in VARIANTS.items():
                scores[name].add(variant(*lists), question.answers)
        kb_weight = embedder.hybrid_weight if embedder.hybrid_weight is not None else DENSE_WEIGHT
        print(f"\n### {kit_name} ({len(questions)} questions; {chunking}; kb's hybrid: w={kb_weight}·coverage)\n")
        print("| ranking | hit@1 | hit@5 | MRR@5 |\n| --- | ---: | ---: | ---: |")
        for name, score in scores.items():
            print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in score.row()) + " |")
    db.dispose()


if __name__ == "__main__":
    main()
