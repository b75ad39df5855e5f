"""Impact-ordered postings: full-text candidates at a million chunks without reading a chunk row per posting.

BM25 computed from the tsvector column (`kb.db.store.search`) must fetch the chunk row of every posting it
scores: about 0.2 ms each at a million chunks, where a question's common words are held by tens of
thousands of chunks (4 s for one six-word question, BENCHMARKS.md "Scale"). MaxScore pruning could not
help: `idf × (k1 + 1)` bounds are loose, so most questions still read every posting.

`fulltext_block` keeps each lexeme's postings outside the chunk rows, in blocks of up to `BLOCK`: the
chunk ids with the lexeme's frequency in each chunk and the chunk's length, ordered by their BM25 impact
(`impact`, BM25 without the IDF) and labelled with the block's largest impact (`bound`). A search reads
the query's best blocks through one index (`candidates`), in the order of the most a block can add to a
chunk's score (the term's IDF times the bound), until `READ_POSTINGS` postings: score-at-a-time
processing of an impact-ordered index with a fixed budget, after Anh and Moffat. Rare words' blocks
come first, so a chunk holding one is always a candidate; when all the query's postings fit the
budget, the candidates are exactly exact BM25's. Beyond that a chunk can be missed only if it holds
none of the rarer words and is not among the best holders of a common one. The candidates are then
scored exactly from their chunk rows (kb.db.store.search).

The budget was chosen on 1M chunks (BENCHMARKS.md, Scale): against exact BM25's top 50 for 400 kit
questions, the same first chunk for 0.987 of them and 0.87 of the top five, in 14 ms; a budget of 2,048
postings per term instead gave 0.947 and 0.75 in 17 ms.

Upkeep:
- Chunks written or edited get their postings in the same transaction (`append`), in blocks of their
  own; postings of deleted or edited chunks stay until the next rebuild, and the exact scoring of
  the candidates drops or corrects them.
- `rebuild` rewrites a dataset's blocks from its tsvectors, range by range, then merges each lexeme's
  short blocks (`merge_short`). It runs with the statistics refresh (kb.db.store.fulltext_stats),
  which also runs once many small blocks have piled up.
- Migration 0007 built the blocks of the datasets that existed before it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import text
from sqlalchemy.orm import Session

from kb.db.ranking import impact_sql

BLOCK = 128
READ_POSTINGS = 12_288  # per search, over all its terms
READ_BLOCKS = 96  # per term at most: whole blocks hold 12,288 postings; appended ones can be smaller

# Postings → blocks: each lexeme's postings, sorted once by impact and cut into slices of BLOCK. `{source}`
# yields (id, lexeme, tf, dl) rows; they are computed below an OFFSET 0 fence, so the sort carries these
# narrow columns and not the tsvector or arrays they came from.
_ORDER = "ORDER BY s.impact DESC, s.id"
_INTO_BLOCKS = f"""
INSERT INTO fulltext_block (dataset_id, lexeme, bound, chunk_ids, tfs, lengths)
SELECT :dataset_id, g.lexeme, g.impacts[i], g.ids[i:i + {BLOCK - 1}], g.tfs[i:i + {BLOCK - 1}], g.dls[i:i + {BLOCK - 1}]
FROM (
    SELECT s.lexeme, array_agg(s.id {_ORDER}) AS ids, array_agg(s.tf {_ORDER}) AS tfs,
           array_agg(s.dl {_ORDER}) AS dls, array_agg(s.impact {_ORDER}) AS impacts
    FROM (
        SELECT p.*, {impact_sql("p.tf", "p.dl")} AS impact
        FROM ({{source}} OFFSET 0) p
    ) s
    GROUP BY s.lexeme
) g, generate_series(1, cardinality(g.ids), {BLOCK}) AS i
"""
# Frequencies are capped at int2 (Postgres keeps at most 256 positions per lexeme).
_FROM_CHUNKS = """
SELECT c.id, u.lexeme, CAST(least(cardinality(u.positions), 32767) AS smallint) AS tf,
       CAST(least(length(c.fts), 32767) AS smallint) AS dl
FROM chunk c, unnest(c.fts) u WHERE c.dataset_id = :dataset_id AND c.fts IS NOT NULL {scope}
"""
_BUILD = _INTO_BLOCKS.replace("{source}", _FROM_CHUNKS)
# A lexeme's short blocks (from several build ranges or appends) merged into full ones.
_MERGE_SHORT = f"""
WITH short AS (
    DELETE FROM fulltext_block b WHERE b.dataset_id = :dataset_id AND cardinality(b.chunk_ids) < {BLOCK}
      AND b.lexeme IN (SELECT lexeme FROM fulltext_block WHERE dataset_id = :dataset_id
                       AND cardinality(chunk_ids) < {BLOCK} GROUP BY lexeme HAVING count(*) > 1)
    RETURNING b.lexeme, b.chunk_ids, b.tfs, b.lengths
)""" + _INTO_BLOCKS.replace(
    "{source}",
    "SELECT p.id, short.lexeme, p.tf, p.dl FROM short, unnest(short.chunk_ids, short.tfs, short.lengths) p(id, tf, dl)",
)
BUILD_CHUNKS = 100_000  # chunks sorted at once by a rebuild: its sort stays in memory-sized runs
BUILD_WORK_MEM = "256MB"

# The query's best postings: each term's best blocks, then every block in the order of the most it can add to a
# chunk's BM25 (the term's IDF times the block's bound) until READ_POSTINGS; summed into BM25 per chunk.
_CANDIDATES = f"""
SELECT p.id, sum(t.w * {impact_sql("p.tf", "p.dl")}) AS bm25
FROM (
    SELECT i.w, b.chunk_ids, b.tfs, b.lengths,
           sum(cardinality(b.chunk_ids)) OVER (ORDER BY i.w * b.bound DESC, i.lexeme, b.id DESC)
             - cardinality(b.chunk_ids) AS before
    FROM unnest(CAST(:terms AS text[]), CAST(:weights AS float8[])) AS i(lexeme, w)
    CROSS JOIN LATERAL (
        SELECT b.id, b.bound, b.chunk_ids, b.tfs, b.lengths FROM fulltext_block b
        WHERE b.dataset_id = :dataset_id AND b.lexeme = i.lexeme ORDER BY b.bound DESC, b.id DESC LIMIT :blocks
    ) b
) t
CROSS JOIN LATERAL unnest(t.chunk_ids, t.tfs, t.lengths) AS p(id, tf, dl)
WHERE t.before < :postings
GROUP BY p.id ORDER BY bm25 DESC, p.id LIMIT :limit
"""


def _avgdl(session: Session, dataset_id: int) -> float:
    """The dataset's mean length as of its last refresh, for ordering new blocks (1 before any refresh)."""
    known = session.execute(
        text("SELECT mean_length FROM fulltext_stats WHERE dataset_id = :d"), {"d": dataset_id}
    ).scalar_one_or_none()
    return max(1.0, float(known or 1.0))


def append(session: Session, dataset_id: int, chunk_ids: Sequence[int]) -> None:
    """Write the postings of these chunks (just written or edited) in new blocks (the caller commits)."""
    if not chunk_ids:
        return
    session.execute(
        text(_BUILD.format(scope="AND c.id = ANY(CAST(:ids AS bigint[]))")),
        {"dataset_id": dataset_id, "ids": [int(i) for i in chunk_ids], "avgdl": _avgdl(session, dataset_id)},
    )


def rebuild(session: Session, dataset_id: int, avgdl: float) -> int:
    """Rewrite the dataset's blocks from its chunks' tsvectors (the caller commits); returns how many.

    Chunks are taken in id ranges of about BUILD_CHUNKS: one sort of a million chunks' postings spilled
    tens of GB to disk. A lexeme held in several ranges gets a short last block in each; those are then
    merged (`merge_short`).
    """
    session.execute(text("DELETE FROM fulltext_block WHERE dataset_id = :d"), {"d": dataset_id})
    session.execute(text("SELECT set_config('work_mem', :m, true)"), {"m": BUILD_WORK_MEM})
    low, high, count = session.execute(
        text("SELECT min(id), max(id), count(*) FROM chunk WHERE dataset_id = :d"), {"d": dataset_id}
    ).one()
    if not count:
        return 0
    step = max(1, (high - low + 1) * BUILD_CHUNKS // count)
    for start in range(low, high + 1, step):
        session.execute(
            text(_BUILD.format(scope="AND c.id >= :start AND c.id < :end")),
            {"dataset_id": dataset_id, "avgdl": max(1.0, avgdl), "start": start, "end": start + step},
        )
    merge_short(session, dataset_id, avgdl)
    return block_count(session, dataset_id)


def merge_short(session: Session, dataset_id: int, avgdl: float) -> None:
    """Merge each lexeme's short blocks into full ones, best impact first (the caller commits)."""
    session.execute(text(_MERGE_SHORT), {"dataset_id": dataset_id, "avgdl": max(1.0, avgdl)})


def block_count(session: Session, dataset_id: int) -> int:
    return int(
        session.execute(text("SELECT count(*) FROM fulltext_block WHERE dataset_id = :d"), {"d": dataset_id}).scalar()
    )


def posting_counts(session: Session, dataset_id: int, lexemes: Sequence[str]) -> dict[str, int]:
    """How many postings each lexeme has in the dataset's blocks (its document frequency, give or take
    the postings of chunks deleted or edited since the last rebuild); lexemes without any are left out."""
    rows = session.execute(
        text(
            "SELECT lexeme, sum(cardinality(chunk_ids)) AS n FROM fulltext_block "
            "WHERE dataset_id = :d AND lexeme = ANY(CAST(:l AS text[])) GROUP BY lexeme"
        ),
        {"d": dataset_id, "l": list(lexemes)},
    ).all()
    return {row.lexeme: int(row.n) for row in rows}


def candidates(
    session: Session,
    dataset_id: int,
    idf: Mapping[str, float],
    avgdl: float,
    limit: int,
    *,
    postings: int = READ_POSTINGS,
) -> list[int]:
    """The `limit` chunk ids with the highest BM25 over the query's `postings` best postings."""
    if not idf:
        return []
    rows = session.execute(
        text(_CANDIDATES),
        {
            "dataset_id": dataset_id,
            "terms": list(idf),
            "weights": list(idf.values()),
            "avgdl": max(1.0, avgdl),
            "blocks": READ_BLOCKS,
            "postings": postings,
            "limit": limit,
        },
    ).all()
    return [row.id for row in rows]
