"""What BM25 needs to know of a whole dataset, kept in tables so a search does not count it each time.

- `fulltext_stats`: per dataset, how many chunks are searchable and their mean length (distinct
  lexemes), as of the last refresh.
- `fulltext_term`: per dataset, the document frequency of every lexeme held by at least
  `COMMON_DF` chunks. A rarer lexeme is not stored: `document_frequencies` counts it live from its one
  or few postings blocks (kb.db.store.postings), which also covers words that arrived after the last
  refresh.

A common word's frequency is known without reading its postings, so a search reads only its best ones.
A refresh reads the whole dataset once (`ts_stat`) and rewrites its postings blocks, so it runs after an
ingestion only when the dataset grew or shrank by more than `STALE_SHARE` since the last one, or when
the small blocks appended since number half of those it wrote (`refresh_if_stale`, called by the
worker); BM25's IDF barely moves below that. Migration 0005 filled both tables for the datasets that
existed before it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from kb.db.store import postings

COMMON_DF = 50
STALE_SHARE = 0.1
PILED_UP = 1_000  # appended blocks tolerated beyond half again those a refresh wrote (kb.db.store.postings)
LIVE_SECONDS = 60.0

SEARCHABLE = (
    "(c.kind = 'manual' OR EXISTS "
    "(SELECT 1 FROM collection col WHERE col.id = c.collection_id AND col.status = 'ready'))"
)


def _id(value: int) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"dataset id must be a positive integer, not {value!r}")
    return int(value)


def searchable_fts(dataset_id: int) -> str:
    """The SELECT of a dataset's searchable tsvectors (a literal: `ts_stat` takes its query as text)."""
    return f"SELECT c.fts FROM chunk c WHERE c.dataset_id = {_id(dataset_id)} AND c.fts IS NOT NULL AND {SEARCHABLE}"


@dataclass(frozen=True)
class TextStats:
    """What BM25 needs of the whole dataset: how many chunks are searchable and their mean length."""

    chunks: int
    mean_length: float


_live: dict[tuple[str, int], tuple[float, TextStats]] = {}
_live_lock = threading.Lock()


def or_query(lexemes: Sequence[str]) -> str:
    """A tsquery matching any of the lexemes, each quoted so that none is parsed or normalised again."""
    return " | ".join("'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'" for lexeme in lexemes)


def _count(session: Session, dataset_id: int, *, lengths: bool = True) -> TextStats:
    """Searchable chunks and (when `lengths`, a read of every tsvector) their mean length."""
    mean = "coalesce(avg(length(c.fts)), 1)" if lengths else "1"
    row = session.execute(
        text(
            f"SELECT count(*) AS n, {mean} AS avgdl FROM chunk c "
            f"WHERE c.dataset_id = {_id(dataset_id)} AND c.fts IS NOT NULL AND {SEARCHABLE}"
        )
    ).one()
    return TextStats(int(row.n), max(1.0, float(row.avgdl)))


def text_stats(session: Session, dataset_id: int) -> TextStats:
    """The dataset's statistics as of its last refresh; counted live (cached LIVE_SECONDS) when it never had one."""
    dataset_id = _id(dataset_id)
    row = session.execute(
        text("SELECT chunks, mean_length FROM fulltext_stats WHERE dataset_id = :d"), {"d": dataset_id}
    ).one_or_none()
    if row is not None:
        return TextStats(int(row.chunks), max(1.0, float(row.mean_length)))
    key, now = (str(session.get_bind().url), dataset_id), time.monotonic()
    with _live_lock:
        cached = _live.get(key)
    if cached is not None and now - cached[0] < LIVE_SECONDS:
        return cached[1]
    stats = _count(session, dataset_id)
    with _live_lock:
        _live[key] = (now, stats)
    return stats


def document_frequencies(session: Session, dataset_id: int, lexemes: Sequence[str]) -> dict[str, int]:
    """How many searchable chunks of the dataset hold each lexeme: common ones stored, rare ones counted now."""
    dataset_id = _id(dataset_id)
    if not lexemes:
        return {}
    stored = dict(
        session.execute(
            text("SELECT lexeme, df FROM fulltext_term WHERE dataset_id = :d AND lexeme = ANY(CAST(:l AS text[]))"),
            {"d": dataset_id, "l": list(lexemes)},
        ).all()
    )
    missing = [lexeme for lexeme in lexemes if lexeme not in stored]
    if missing:
        stored.update(postings.posting_counts(session, dataset_id, missing))
    return {lexeme: stored.get(lexeme, 0) for lexeme in lexemes}


def refresh(session: Session, dataset_id: int) -> TextStats:
    """Recount the dataset's statistics and common lexemes and rewrite its postings blocks (the caller commits)."""
    dataset_id = _id(dataset_id)
    # Two workers finishing ingestions of one dataset at once would otherwise insert the same rows.
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('kb.fulltext_stats'), CAST(:d AS integer))"), {"d": dataset_id}
    )
    session.execute(text("DELETE FROM fulltext_term WHERE dataset_id = :d"), {"d": dataset_id})
    session.execute(
        text(
            "INSERT INTO fulltext_term (dataset_id, lexeme, df) SELECT :d, word, ndoc "
            "FROM ts_stat(:q) WHERE ndoc >= :common"
        ),
        {"d": dataset_id, "q": searchable_fts(dataset_id), "common": COMMON_DF},
    )
    stats = _count(session, dataset_id)
    blocks = postings.rebuild(session, dataset_id, stats.mean_length)
    session.execute(
        text(
            "INSERT INTO fulltext_stats (dataset_id, chunks, mean_length, blocks, refreshed_at) "
            "VALUES (:d, :n, :m, :b, now()) "
            "ON CONFLICT (dataset_id) DO UPDATE SET chunks = :n, mean_length = :m, blocks = :b, refreshed_at = now()"
        ),
        {"d": dataset_id, "n": stats.chunks, "m": stats.mean_length, "b": blocks},
    )
    return stats


def refresh_if_stale(session: Session, dataset_id: int) -> bool:
    """Refresh when the dataset never was, its size moved by more than STALE_SHARE since, or the blocks
    appended since number half of those the refresh wrote (plus PILED_UP); True if it did."""
    dataset_id = _id(dataset_id)
    known = session.execute(
        text("SELECT chunks, blocks FROM fulltext_stats WHERE dataset_id = :d"), {"d": dataset_id}
    ).one_or_none()
    if known is not None:
        now = _count(session, dataset_id, lengths=False).chunks
        grown = abs(now - known.chunks) > STALE_SHARE * max(known.chunks, 1)
        if not grown and postings.block_count(session, dataset_id) <= known.blocks * 3 // 2 + PILED_UP:
            return False
    refresh(session, dataset_id)
    return True
