"""Pruned BM25 against exact BM25 on a real PostgreSQL, and the statistics that make pruning possible."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import event, text

from kb.db.store import datasets as dataset_store
from kb.db.store import fulltext_stats
from kb.db.store import search as search_store
from kb.testing import HashEmbedder
from tests.server.search_support import add_collection, add_texts

# Made-up words, so that no stemming or stop word changes them: a few common ones, many rare ones.
WORDS = [f"zq{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(300)]


def _text(rng: random.Random) -> str:
    # Zipf-like: word i is drawn with weight 1/(i+1), as words of real text are.
    return " ".join(rng.choices(WORDS, weights=[1 / (i + 1) for i in range(len(WORDS))], k=40))


@pytest.fixture
def corpus(db) -> int:
    """A dataset of 400 Zipf-distributed texts with its statistics refreshed; returns its id."""
    rng = random.Random(7)
    with db.session() as session:
        dataset = dataset_store.add_dataset(
            session, name="zipf", embed_model="hash", embed_dim=64, embed_variant="hash-v1"
        )
        add_texts(
            session,
            dataset.id,
            add_collection(session, dataset.id, "z.md"),
            [_text(rng) for _ in range(400)],
            HashEmbedder(),
        )
        fulltext_stats.refresh(session, dataset.id)
        session.commit()
    return dataset.id


def _top(session, dataset_id: int, query: str, *, pruned: bool) -> list[tuple[int, float]]:
    prepared = search_store.prepare_fulltext(session, dataset_id, query)
    return [(row.id, round(float(row.bm25), 9)) for row in search_store.top_bm25(session, prepared, 10, pruned=pruned)]


def test_pruned_bm25_returns_exactly_the_top_of_exact_bm25(db, corpus):
    rng = random.Random(3)
    queries = [" ".join(rng.sample(WORDS[:150], k)) for k in (1, 2, 3, 4, 6) for _ in range(8)]
    with db.session() as session:
        for query in queries:
            assert _top(session, corpus, query, pruned=True) == _top(session, corpus, query, pruned=False), query


def test_a_common_words_postings_are_not_read_when_rarer_words_decide_the_top(db, corpus):
    ranked_terms = []

    def note(conn, cursor, statement, params, context, executemany):
        if isinstance(params, dict) and "tsquery" in params:
            ranked_terms.append(params["tsquery"])

    query = f"{WORDS[0]} {WORDS[40]} {WORDS[41]} {WORDS[42]}"
    event.listen(db.engine, "before_cursor_execute", note)
    try:
        with db.session() as session:
            pruned = _top(session, corpus, query, pruned=True)
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    assert WORDS[0] not in ranked_terms[-1]  # the most common word only scored the candidates
    with db.session() as session:
        assert pruned == _top(session, corpus, query, pruned=False)


def test_statistics_keep_common_words_and_count_rare_ones_live(db, corpus):
    with db.session() as session:
        frequencies = fulltext_stats.document_frequencies(session, corpus, [WORDS[0], WORDS[250], "zzzmissing"])
        stored = session.execute(
            text("SELECT lexeme FROM fulltext_term WHERE dataset_id = :d"), {"d": corpus}
        ).scalars()
        stored = set(stored)
    assert frequencies[WORDS[0]] >= fulltext_stats.COMMON_DF and WORDS[0] in stored
    assert 0 < frequencies[WORDS[250]] < fulltext_stats.COMMON_DF and WORDS[250] not in stored
    assert frequencies["zzzmissing"] == 0


def test_statistics_are_refreshed_only_when_the_dataset_changed_size_enough(db, corpus):
    rng = random.Random(11)
    with db.session() as session:
        assert not fulltext_stats.refresh_if_stale(session, corpus)
        collection = add_collection(session, corpus, "more.md")
        add_texts(session, corpus, collection, [_text(rng) for _ in range(20)], HashEmbedder())
        assert not fulltext_stats.refresh_if_stale(session, corpus)  # 5% more: IDF barely moves
        add_texts(session, corpus, collection, [_text(rng) for _ in range(40)], HashEmbedder())
        assert fulltext_stats.refresh_if_stale(session, corpus)
        assert fulltext_stats.text_stats(session, corpus).chunks == 460
