"""Search SQL: vector search on a dataset's own HNSW index and BM25 full-text search, one dataset per call.

Only chunks that may be quoted are searched: those of `ready` collections, and manual chunks.

Vector search must match the partial index built by `kb.store.datasets.ensure_vector_index`
exactly: the expression `embedding::vector(<dim>)` and the predicate `dataset_id = <id>` are
written into the SQL as literals (validated integers), because the planner only uses a partial
index whose predicate it can prove from the query text, not from a bind parameter.

Full-text search ranks with BM25 computed in SQL from the tsvector column: the query's lexemes are
OR-ed (recall: a question rarely shares every word with its answer), the GIN index finds the chunks
holding any of them, and document frequencies come from those same chunks, which is exact because
every chunk holding a query term matches the OR query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from kb.ranking import BM25_B, BM25_K1, fulltext_score
from kb.store.chunks import vector_literal
from kb.textsearch import TS_CONFIG

DEFAULT_EF_SEARCH = 100


@dataclass(frozen=True)
class ChunkHit:
    """One chunk found by one list: `score` is the list's raw score, `scaled` the same on a 0..1 scale."""

    chunk_id: int
    collection_id: int
    dataset_id: int
    source: str
    q: str
    a: str
    page: int | None
    heading: str
    token_count: int
    score: float
    scaled: float
    rank: int


@dataclass(frozen=True)
class ListResult:
    """A ranked list (`hits`, best first) and the same list's scaled scores of chunks asked for by id."""

    hits: list[ChunkHit]
    scores_of: dict[int, float]


def _int(value: int, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


_SEARCHABLE = (
    "(c.kind = 'manual' OR EXISTS "
    "(SELECT 1 FROM collection col WHERE col.id = c.collection_id AND col.status = 'ready'))"
)
_HIT_COLUMNS = (
    "c.id, c.collection_id, c.dataset_id, (SELECT name FROM collection WHERE id = c.collection_id) AS source, "
    "c.q, c.a, c.page, c.heading, c.token_count"
)


def _hit(row, score: float, scaled: float, rank: int) -> ChunkHit:
    return ChunkHit(
        chunk_id=row.id,
        collection_id=row.collection_id,
        dataset_id=row.dataset_id,
        source=row.source,
        q=row.q,
        a=row.a,
        page=row.page,
        heading=row.heading,
        token_count=row.token_count,
        score=score,
        scaled=scaled,
        rank=rank,
    )


def set_ef_search(session: Session, ef_search: int) -> None:
    """HNSW candidate list size for the rest of this transaction (higher: better recall, slower)."""
    session.execute(text("SELECT set_config('hnsw.ef_search', :v, true)"), {"v": str(_int(ef_search, "ef_search"))})
    # Keep walking the graph when filtered-out rows (non-ready collections) leave fewer than `limit` hits.
    session.execute(text("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)"))


def vector_search_sql(dataset_id: int, dim: int, limit: int) -> str:
    """The nearest-neighbour query for one dataset, written so the planner can use its partial HNSW index."""
    dataset_id, limit = _int(dataset_id, "dataset_id"), _int(limit, "limit")
    distance = _distance(dim)
    return (
        f"SELECT * FROM (SELECT {_HIT_COLUMNS}, 1 - ({distance}) AS similarity FROM chunk c "
        f"WHERE c.dataset_id = {dataset_id} AND c.embedding IS NOT NULL AND {_SEARCHABLE} "
        f"ORDER BY {distance} LIMIT {limit}) v ORDER BY similarity DESC, id"
    )


def vector_search(
    session: Session, dataset_id: int, query_vector: Sequence[float], *, limit: int, ef_search: int = DEFAULT_EF_SEARCH
) -> ListResult:
    """The `limit` chunks nearest the query by cosine, walked on the dataset's HNSW index."""
    set_ef_search(session, ef_search)
    rows = session.execute(
        text(vector_search_sql(dataset_id, len(query_vector), limit)), {"q": vector_literal(query_vector)}
    ).all()
    hits = [_hit(row, float(row.similarity), _unit(row.similarity), rank) for rank, row in enumerate(rows, 1)]
    return ListResult(hits, {hit.chunk_id: hit.scaled for hit in hits})


def vector_scores(
    session: Session, dataset_id: int, query_vector: Sequence[float], chunk_ids: Sequence[int]
) -> dict[int, float]:
    """The 0..1 cosine score of each given chunk of the dataset (exact, looked up by id)."""
    dataset_id = _int(dataset_id, "dataset_id")
    if not chunk_ids:
        return {}
    rows = session.execute(
        text(
            f"SELECT c.id, 1 - ({_distance(len(query_vector))}) AS similarity FROM chunk c "
            f"WHERE c.dataset_id = {dataset_id} AND c.id = ANY(CAST(:ids AS bigint[]))"
        ),
        {"q": vector_literal(query_vector), "ids": sorted({int(i) for i in chunk_ids})},
    ).all()
    return {row.id: _unit(row.similarity) for row in rows}


def _distance(dim: int) -> str:
    """Cosine distance to `:q` in the exact form of the partial index's expression."""
    dim = _int(dim, "dimension")
    return f"c.embedding::vector({dim}) <=> CAST(:q AS vector({dim}))"


def _unit(similarity: float) -> float:
    """Cosine similarity as a 0..1 score: opposite or unrelated directions count as no similarity."""
    return min(1.0, max(0.0, float(similarity)))


# BM25 over the tsvector column. Document length is the number of distinct lexemes (`length(fts)`),
# which needs no second pass over the text. Rows come back with the positions of the query's terms
# in the chunk and the query's IDF per term, for the proximity part of the score (kb.ranking).
_BM25 = f"""
WITH stats AS (
    SELECT count(*) AS n, coalesce(avg(length(c.fts)), 1) AS avgdl
    FROM chunk c WHERE c.dataset_id = {{dataset_id}} AND c.fts IS NOT NULL AND {_SEARCHABLE}
), matched AS (
    SELECT c.id, c.fts FROM chunk c
    WHERE c.dataset_id = {{dataset_id}} AND c.fts @@ CAST(:tsquery AS tsquery) AND {_SEARCHABLE}
), postings AS (
    SELECT m.id, length(m.fts) AS dl, p.lexeme, p.positions, cardinality(p.positions) AS tf
    FROM matched m,
         unnest(ts_filter(setweight(setweight(m.fts, 'D'), 'A', CAST(:lexemes AS text[])), '{{{{a}}}}')) p
), idf AS (
    SELECT lexeme, ln(1 + ((SELECT n FROM stats) - count(*) + 0.5) / (count(*) + 0.5)) AS w
    FROM postings GROUP BY lexeme
), scored AS (
    SELECT p.id, sum(i.w * p.tf * {BM25_K1 + 1} / (p.tf + {BM25_K1} * (1 - {BM25_B} + {BM25_B} * p.dl / s.avgdl))) AS bm25
    FROM postings p JOIN idf i USING (lexeme) CROSS JOIN stats s GROUP BY p.id
), ranked AS (
    SELECT id, bm25, row_number() OVER (ORDER BY bm25 DESC, id) AS rank FROM scored
), chosen AS (
    SELECT id, bm25, rank FROM ranked WHERE rank <= :limit OR id = ANY(CAST(:ids AS bigint[]))
), places AS (
    SELECT id, array_agg(lexeme ORDER BY lexeme) AS lexemes,
           array_agg(array_to_string(positions, ',') ORDER BY lexeme) AS positions
    FROM postings WHERE id IN (SELECT id FROM chosen) GROUP BY id
)
SELECT {_HIT_COLUMNS}, r.bm25, r.rank, pl.lexemes, pl.positions,
       (SELECT array_agg(lexeme ORDER BY lexeme) FROM idf) AS idf_terms,
       (SELECT array_agg(w ORDER BY lexeme) FROM idf) AS idf_weights
FROM chosen r JOIN chunk c ON c.id = r.id JOIN places pl ON pl.id = r.id
"""


def query_lexemes(session: Session, query_text: str) -> list[str]:
    """The query's distinct lexemes as the index holds them (stemmed, stop words dropped)."""
    return list(
        session.execute(text(f"SELECT tsvector_to_array(to_tsvector('{TS_CONFIG}', :q))"), {"q": query_text}).scalar()
    )


def or_query(lexemes: Sequence[str]) -> str:
    """A tsquery matching any of the lexemes, each quoted so that none is parsed or normalised again."""
    return " | ".join("'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'" for lexeme in lexemes)


def fulltext_search(
    session: Session, dataset_id: int, query_text: str, *, limit: int, include_ids: Sequence[int] = ()
) -> ListResult:
    """The best chunks for an already segmented query (`kb.textsearch.segment_query`), plus `include_ids`' scores.

    Candidates are the `limit` best by BM25 with the query's terms OR-ed (a question rarely shares every
    word with its answer); they come back ordered and ranked by the 0..1 `kb.ranking.fulltext_score`.
    Chunks sharing no term with the query score 0.
    """
    dataset_id, limit = _int(dataset_id, "dataset_id"), _int(limit, "limit")
    lexemes = query_lexemes(session, query_text)
    if not lexemes:
        return ListResult([], {})
    rows = session.execute(
        text(_BM25.format(dataset_id=dataset_id)),
        {"tsquery": or_query(lexemes), "lexemes": lexemes, "limit": limit, "ids": sorted({int(i) for i in include_ids})},
    ).all()
    scored = []
    for row in rows:
        idf = dict(zip(row.idf_terms, map(float, row.idf_weights)))
        positions = {term: [int(p) for p in places.split(",")] for term, places in zip(row.lexemes, row.positions)}
        scored.append((fulltext_score(float(row.bm25), idf, positions), row))
    scored.sort(key=lambda item: (-item[0], item[1].rank))
    in_list = [(score, row) for score, row in scored if row.rank <= limit]
    hits = [_hit(row, float(row.bm25), score, rank) for rank, (score, row) in enumerate(in_list, 1)]
    return ListResult(hits, {row.id: score for score, row in scored})
