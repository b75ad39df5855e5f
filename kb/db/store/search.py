"""Search SQL: vector search on a dataset's own HNSW index and BM25 full-text search, one dataset per call.

Only chunks that may be quoted are searched: those of `ready` collections, and manual chunks.

Vector search must match the partial index built by `kb.db.store.datasets.ensure_vector_index`
exactly: the expression `embedding::vector(<dim>)` and the predicate `dataset_id = <id>` are
written into the SQL as literals (validated integers), because the planner only uses a partial
index whose predicate it can prove from the query text, not from a bind parameter.

Full-text search ranks with BM25 over the query's lexemes OR-ed (recall: a question rarely shares
every word with its answer). Candidates come from each term's best postings in its impact-ordered
blocks (kb.db.store.postings), without reading chunk rows; they are then scored exactly from their
tsvectors. The exact baseline (`pruned=False`) finds every chunk holding a query term through the
GIN index and scores them all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

from sqlalchemy import text
from sqlalchemy.orm import Session

from kb.db.ranking import fulltext_score, impact_sql
from kb.db.store import postings
from kb.db.store.chunks import vector_literal
from kb.db.store.fulltext_stats import SEARCHABLE, TextStats, document_frequencies, or_query, text_stats
from kb.db.textsearch import TS_CONFIG

DEFAULT_EF_SEARCH = 100
RESCORED = 2  # full-text candidates scored exactly, per result asked for


@dataclass(frozen=True)
class FoundChunk:
    """What every search result says about its chunk: where it is from, and its text."""

    chunk_id: int
    collection_id: int
    dataset_id: int
    source: str
    q: str
    a: str
    page: int | None
    heading: str
    token_count: int

    def chunk_fields(self) -> dict:
        """These fields alone, to build another kind of result about the same chunk."""
        return {name: getattr(self, name) for name in _FOUND_FIELDS}


_FOUND_FIELDS = tuple(f.name for f in fields(FoundChunk))


@dataclass(frozen=True)
class ChunkHit(FoundChunk):
    """One chunk found by one list: `score` is the list's raw score, `scaled` the same on a 0..1 scale."""

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


_HIT_COLUMNS = (
    "c.id, c.collection_id, c.dataset_id, (SELECT name FROM collection WHERE id = c.collection_id) AS source, "
    "c.q, c.a, c.page, c.heading, c.token_count"
)


def _hit(row, score: float, scaled: float, rank: int) -> ChunkHit:
    return ChunkHit(
        row.id,
        row.collection_id,
        row.dataset_id,
        row.source,
        row.q,
        row.a,
        row.page,
        row.heading,
        row.token_count,
        score=score,
        scaled=scaled,
        rank=rank,
    )


def set_ef_search(session: Session, ef_search: int) -> None:
    """HNSW candidate list size for the rest of this transaction (higher: better recall, slower)."""
    # iterative_scan: keep walking the graph when filtered-out rows (non-ready collections) leave fewer
    # than `limit` hits.
    session.execute(
        text("SELECT set_config('hnsw.ef_search', :v, true), set_config('hnsw.iterative_scan', 'relaxed_order', true)"),
        {"v": str(_int(ef_search, "ef_search"))},
    )


def vector_search_sql(dataset_id: int, dim: int, limit: int) -> str:
    """The nearest-neighbour query for one dataset, written so the planner can use its partial HNSW index."""
    dataset_id, limit = _int(dataset_id, "dataset_id"), _int(limit, "limit")
    distance = _distance(dim)
    return (
        f"SELECT * FROM (SELECT {_HIT_COLUMNS}, 1 - ({distance}) AS similarity FROM chunk c "
        f"WHERE c.dataset_id = {dataset_id} AND c.embedding IS NOT NULL AND {SEARCHABLE} "
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


# BM25 over the tsvector column. Document length is the number of distinct lexemes (`length(fts)`). A
# chunk's query terms are picked out of its tsvector by marking them with weight A and keeping only A
# (kb never sets weights, so everything else is D). _RANK ranks the chunks holding any of the
# `:tsquery` terms by their BM25 over every query term; the `_scored` queries also return where the
# query's terms sit in the chunks they rank, for the proximity part of the score (kb.db.ranking).
_QUERY_TERMS = "unnest(ts_filter(setweight(c.fts, 'A', CAST(:lexemes AS text[])), '{{a}}')) p"  # braces: str.format
_TERM_BM25 = f"i.w * {impact_sql('p.tf', 'p.dl')}"
_POSTINGS = f"SELECT c.id, length(c.fts) AS dl, p.lexeme, p.positions, cardinality(p.positions) AS tf FROM chunk c, {_QUERY_TERMS}"
_IDF = "unnest(CAST(:idf_terms AS text[]), CAST(:idf_weights AS float8[])) AS i(lexeme, w)"


# Exact BM25 of every searchable chunk holding a query term (`:tsquery`), best first: ids and scores only.
_RANK = f"""
SELECT p.id, sum({_TERM_BM25}) AS bm25
FROM ({_POSTINGS} WHERE c.dataset_id = {{dataset_id}} AND c.fts @@ CAST(:tsquery AS tsquery) AND {SEARCHABLE}) p
JOIN {_IDF} USING (lexeme)
GROUP BY p.id ORDER BY bm25 DESC, p.id LIMIT :limit
"""


def _scored(matching: str) -> str:
    """The hit columns, exact BM25 and query-term positions of the dataset's `:limit` best chunks `matching`."""
    return f"""
SELECT {_HIT_COLUMNS}, s.bm25, s.lexemes, s.positions FROM (
    SELECT p.id, sum({_TERM_BM25}) AS bm25, array_agg(p.lexeme) AS lexemes,
           array_agg(array_to_string(p.positions, ',')) AS positions
    FROM ({_POSTINGS} WHERE c.dataset_id = {{dataset_id}} AND {matching}) p
    JOIN {_IDF} USING (lexeme)
    GROUP BY p.id ORDER BY bm25 DESC, p.id LIMIT :limit
) s JOIN chunk c ON c.id = s.id
"""


_BY_ID = "c.id = ANY(CAST(:ids AS bigint[]))"
_RESCORE = _scored(f"{_BY_ID} AND {SEARCHABLE}")  # pruned: the candidates, scored and ranked in one read
_SCORE = _scored(_BY_ID)  # given chunks (found by the other list)


def query_lexemes(session: Session, query_text: str) -> list[str]:
    """The query's distinct lexemes as the index holds them (stemmed, stop words dropped)."""
    return list(
        session.execute(text(f"SELECT tsvector_to_array(to_tsvector('{TS_CONFIG}', :q))"), {"q": query_text}).scalar()
    )


def bm25_idf(chunks: int, df: int) -> float:
    """BM25's inverse document frequency of a term held by `df` of `chunks` chunks."""
    return math.log(1 + (max(chunks, df) - df + 0.5) / (df + 0.5))


@dataclass(frozen=True)
class FulltextQuery:
    """A query as one dataset's full text sees it: its terms, their IDF there, and the dataset's statistics."""

    dataset_id: int
    lexemes: list[str]
    idf: dict[str, float]
    stats: TextStats


def prepare_fulltext(session: Session, dataset_id: int, query_text: str) -> FulltextQuery:
    """The query's lexemes that the dataset holds, with their IDF there."""
    lexemes = query_lexemes(session, query_text)
    stats = text_stats(session, dataset_id)
    df = document_frequencies(session, dataset_id, lexemes)
    idf = {lexeme: bm25_idf(stats.chunks, n) for lexeme, n in sorted(df.items(), key=lambda i: (i[1], i[0])) if n}
    return FulltextQuery(dataset_id, lexemes, idf, stats)


def _bm25_rows(session: Session, prepared: FulltextQuery, sql: str, limit: int, **params) -> list:
    return session.execute(
        text(sql.format(dataset_id=prepared.dataset_id)),
        {
            "lexemes": list(prepared.idf),
            "idf_terms": list(prepared.idf),
            "idf_weights": list(prepared.idf.values()),
            "avgdl": prepared.stats.mean_length,
            "limit": limit,
            **params,
        },
    ).all()


def top_bm25(session: Session, prepared: FulltextQuery, limit: int, *, pruned: bool = True) -> list:
    """The `limit` chunks with the highest BM25 (ties by id), as rows of `id` and `bm25`.

    Pruned (the default): the `RESCORED` × `limit` best candidates by the query terms' best postings
    (kb.db.store.postings.candidates), scored exactly from their chunk rows. This equals exact BM25
    whenever no query term has more postings than a search reads; beyond that, a chunk holding only
    common words and none of them strongly can be missed. `pruned=False` scores every chunk holding any
    query term (exact BM25, the baseline; it reads a chunk row per posting).
    """
    if not pruned:
        return _bm25_rows(session, prepared, _RANK, limit, tsquery=or_query(list(prepared.idf)))
    ids = postings.candidates(session, prepared.dataset_id, prepared.idf, prepared.stats.mean_length, limit * RESCORED)
    return _bm25_rows(session, prepared, _RESCORE, limit, ids=sorted(ids)) if ids else []


def fulltext_search(
    session: Session, dataset_id: int, query_text: str, *, limit: int, pruned: bool = True
) -> tuple[ListResult, FulltextQuery]:
    """The best chunks for an already segmented query (`kb.db.textsearch.segment_query`), and the prepared query.

    Candidates are the `limit` best by BM25 with the query's terms OR-ed (a question rarely shares every
    word with its answer; `top_bm25`); they come back ordered and ranked by the 0..1
    `kb.db.ranking.fulltext_score`. Pass the prepared query to `fulltext_scores` to score other chunks the same way.
    """
    dataset_id, limit = _int(dataset_id, "dataset_id"), _int(limit, "limit")
    prepared = prepare_fulltext(session, dataset_id, query_text)
    if not prepared.idf:
        return ListResult([], {}), prepared
    ranked = top_bm25(session, prepared, limit, pruned=pruned)
    # Pruned, the ranked rows are already scored rows; exact ranking reads only ids and BM25 first.
    rows = ranked if pruned else _score_rows(session, prepared, [row.id for row in ranked])
    by_bm25 = {row.id: rank for rank, row in enumerate(sorted(rows, key=lambda r: (-r.bm25, r.id)), 1)}
    scored = [(_score(row, prepared), row) for row in rows]
    scored.sort(key=lambda item: (-item[0], by_bm25[item[1].id]))
    hits = [_hit(row, float(row.bm25), score, rank) for rank, (score, row) in enumerate(scored, 1)]
    return ListResult(hits, {hit.chunk_id: hit.scaled for hit in hits}), prepared


def fulltext_scores(session: Session, prepared: FulltextQuery, chunk_ids: Sequence[int]) -> dict[int, float]:
    """The 0..1 full-text score of given chunks (0 for those holding no query term)."""
    return {row.id: _score(row, prepared) for row in _score_rows(session, prepared, chunk_ids)}


def _score_rows(session: Session, prepared: FulltextQuery, chunk_ids: Sequence[int]) -> list:
    ids = sorted({int(i) for i in chunk_ids})
    if not ids or not prepared.idf:
        return []
    return _bm25_rows(session, prepared, _SCORE, len(ids), ids=ids)


def _score(row, prepared: FulltextQuery) -> float:
    """A scored row's 0..1 full-text score (kb.db.ranking), from its BM25 and where the query's terms sit."""
    positions = {term: [int(p) for p in places.split(",")] for term, places in zip(row.lexemes, row.positions)}
    return fulltext_score(float(row.bm25), prepared.idf, positions)
