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

from kb.store.chunks import vector_literal
from kb.textsearch import TS_CONFIG

BM25_K1 = 1.2
BM25_B = 0.75
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


def vector_search(
    session: Session,
    dataset_id: int,
    query_vector: Sequence[float],
    *,
    limit: int,
    ef_search: int = DEFAULT_EF_SEARCH,
    include_ids: Sequence[int] = (),
) -> ListResult:
    """The `limit` chunks nearest the query by cosine, plus the similarity of `include_ids` (exact, by id)."""
    dataset_id, limit = _int(dataset_id, "dataset_id"), _int(limit, "limit")
    dim = _int(len(query_vector), "dimension")
    distance = f"c.embedding::vector({dim}) <=> CAST(:q AS vector({dim}))"
    set_ef_search(session, ef_search)
    nearest = session.execute(
        text(
            f"SELECT * FROM (SELECT {_HIT_COLUMNS}, {distance} AS distance FROM chunk c "
            f"WHERE c.dataset_id = {dataset_id} AND {_SEARCHABLE} ORDER BY distance LIMIT {limit}) v "
            "ORDER BY distance, id"
        ),
        {"q": vector_literal(query_vector)},
    ).all()
    hits = [_hit(row, 1.0 - row.distance, _unit(1.0 - row.distance), rank) for rank, row in enumerate(nearest, 1)]
    found = {hit.chunk_id for hit in hits}
    wanted = sorted({int(i) for i in include_ids} - found)
    scores_of = {hit.chunk_id: hit.scaled for hit in hits}
    if wanted:
        rows = session.execute(
            text(
                f"SELECT c.id, 1 - ({distance}) AS similarity FROM chunk c "
                f"WHERE c.dataset_id = {dataset_id} AND c.id = ANY(CAST(:ids AS bigint[]))"
            ),
            {"q": vector_literal(query_vector), "ids": wanted},
        ).all()
        scores_of.update({row.id: _unit(row.similarity) for row in rows})
    return ListResult(hits, scores_of)


def _unit(similarity: float) -> float:
    """Cosine similarity as a 0..1 score: opposite or unrelated directions count as no similarity."""
    return min(1.0, max(0.0, float(similarity)))


# BM25 over the tsvector column. Document length is the number of distinct lexemes (`length(fts)`),
# which needs no second pass over the text. `ideal` is the BM25 of a chunk of average length holding
# every known query term once: dividing by it gives the 0..1 "share of the query's weight matched".
_BM25 = f"""
WITH terms AS (
    SELECT tsvector_to_array(to_tsvector('{TS_CONFIG}', :query)) AS lexemes
), query AS (
    SELECT lexemes, CASE WHEN cardinality(lexemes) > 0 THEN array_to_string(ARRAY(
        SELECT '''' || replace(replace(l, '\\', '\\\\'), '''', '''''') || '''' FROM unnest(lexemes) l), ' | ')::tsquery
    END AS tsq FROM terms
), stats AS (
    SELECT count(*) AS n, coalesce(avg(length(c.fts)), 1) AS avgdl
    FROM chunk c WHERE c.dataset_id = {{dataset_id}} AND {_SEARCHABLE}
), matched AS (
    SELECT c.id, c.fts FROM chunk c
    WHERE c.dataset_id = {{dataset_id}} AND c.fts @@ (SELECT tsq FROM query) AND {_SEARCHABLE}
), postings AS (
    SELECT m.id, length(m.fts) AS dl, p.lexeme, cardinality(p.positions) AS tf
    FROM matched m,
         unnest(ts_filter(setweight(setweight(m.fts, 'D'), 'A', (SELECT lexemes FROM query)), '{{{{a}}}}')) p
), idf AS (
    SELECT lexeme, ln(1 + ((SELECT n FROM stats) - count(*) + 0.5) / (count(*) + 0.5)) AS w
    FROM postings GROUP BY lexeme
), scored AS (
    SELECT p.id, sum(i.w * p.tf * {BM25_K1 + 1} / (p.tf + {BM25_K1} * (1 - {BM25_B} + {BM25_B} * p.dl / s.avgdl))) AS bm25
    FROM postings p JOIN idf i USING (lexeme) CROSS JOIN stats s GROUP BY p.id
), ranked AS (
    SELECT id, bm25, row_number() OVER (ORDER BY bm25 DESC, id) AS rank FROM scored
)
SELECT {_HIT_COLUMNS}, r.bm25, r.rank, (SELECT sum(w) FROM idf) AS ideal
FROM ranked r JOIN chunk c ON c.id = r.id
WHERE r.rank <= :limit OR r.id = ANY(CAST(:ids AS bigint[]))
ORDER BY r.rank
"""


def fulltext_search(
    session: Session, dataset_id: int, query_text: str, *, limit: int, include_ids: Sequence[int] = ()
) -> ListResult:
    """The `limit` best chunks by BM25 for an already segmented query, plus the scores of `include_ids`.

    `scaled` is BM25 divided by the query's ideal score, capped at 1; chunks sharing no term score 0.
    """
    dataset_id, limit = _int(dataset_id, "dataset_id"), _int(limit, "limit")
    rows = session.execute(
        text(_BM25.format(dataset_id=dataset_id)),
        {"query": query_text, "limit": limit, "ids": sorted({int(i) for i in include_ids})},
    ).all()
    hits, scores_of = [], {}
    for row in rows:
        scaled = min(1.0, float(row.bm25) / float(row.ideal)) if row.ideal else 0.0
        scores_of[row.id] = scaled
        if row.rank <= limit:
            hits.append(_hit(row, float(row.bm25), scaled, int(row.rank)))
    return ListResult(hits, scores_of)
