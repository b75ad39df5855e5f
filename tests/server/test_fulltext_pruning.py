"""Full text from impact-ordered postings against exact BM25 on a real PostgreSQL, the postings' upkeep, and
the statistics that make reading only a word's best postings possible."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import text

from kb.db.migrate import downgrade, upgrade
from kb.db.store import chunks as chunk_store
from kb.db.store import datasets as dataset_store
from kb.db.store import fulltext_stats, postings
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


def test_a_single_words_best_postings_are_its_top_even_when_only_one_block_is_read(db, corpus):
    # For one word, BM25 is its IDF times the impact: the best block by impact holds the exact top.
    with db.session() as session:
        prepared = search_store.prepare_fulltext(session, corpus, WORDS[0])
        assert postings.posting_counts(session, corpus, [WORDS[0]])[WORDS[0]] > postings.BLOCK  # more than one block
        ids = postings.candidates(session, corpus, prepared.idf, prepared.stats.mean_length, 10, postings=1)
        assert ids == [row.id for row in search_store.top_bm25(session, prepared, 10, pruned=False)]


def test_a_read_budget_smaller_than_a_words_postings_still_finds_the_chunks_holding_rarer_words(db, corpus):
    rng = random.Random(5)
    kept = []
    with db.session() as session:
        for _ in range(20):
            query = " ".join([WORDS[0], WORDS[1], *rng.sample(WORDS[100:300], 2)])
            prepared = search_store.prepare_fulltext(session, corpus, query)
            exact = {row.id for row in search_store.top_bm25(session, prepared, 10, pruned=False)}
            found = set(postings.candidates(session, corpus, prepared.idf, prepared.stats.mean_length, 20, postings=64))
            kept.append(len(exact & found) / len(exact))
    assert sum(kept) / len(kept) >= 0.9, kept


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


def _found(session, dataset_id: int, query: str) -> list[int]:
    return [hit.chunk_id for hit in search_store.fulltext_search(session, dataset_id, query, limit=10)[0].hits]


def test_chunks_written_after_the_refresh_are_found_and_deleted_or_edited_ones_are_not(db, corpus):
    with db.session() as session:
        collection = add_collection(session, corpus, "late.md")
        late, edited, deleted = add_texts(
            session, corpus, collection, ["zzlate alpha", "zzbefore beta", "zzgone gamma"], HashEmbedder()
        )
        add_texts(session, corpus, add_collection(session, corpus, "busy.md", "processing"), ["zzlate"], HashEmbedder())
        chunk_store.update_chunk(session, edited, q="zzafter beta", a="", embedding=[0.1] * 64, token_count=2)
        assert chunk_store.delete_chunk(session, deleted)
        session.commit()
        assert _found(session, corpus, "zzlate") == [late]  # not the chunk of a collection still being ingested
        assert _found(session, corpus, "zzafter") == [edited]
        assert _found(session, corpus, "zzbefore") == []  # its old postings are read, then rescored to nothing
        assert _found(session, corpus, "zzgone") == []


def test_a_refresh_rewrites_the_blocks_without_the_postings_of_deleted_chunks(db, corpus):
    with db.session() as session:
        (gone,) = add_texts(session, corpus, add_collection(session, corpus, "x.md"), ["zzgone"], HashEmbedder())
        chunk_store.delete_chunk(session, gone)
        assert postings.posting_counts(session, corpus, ["zzgone"]) == {"zzgone": 1}
        fulltext_stats.refresh(session, corpus)
        assert postings.posting_counts(session, corpus, ["zzgone"]) == {}
        stored = session.execute(text("SELECT blocks FROM fulltext_stats WHERE dataset_id = :d"), {"d": corpus})
        assert stored.scalar() == postings.block_count(session, corpus)


def test_blocks_piling_up_from_small_ingestions_bring_a_refresh(db, corpus, monkeypatch):
    monkeypatch.setattr(fulltext_stats, "PILED_UP", 0)
    rng = random.Random(13)
    with db.session() as session:
        before = postings.block_count(session, corpus)
        collection = add_collection(session, corpus, "drip.md")
        while postings.block_count(session, corpus) <= before * 3 // 2:  # one text per ingestion, a block per word
            assert not fulltext_stats.refresh_if_stale(session, corpus)
            add_texts(session, corpus, collection, [_text(rng)], HashEmbedder())
        assert fulltext_stats.refresh_if_stale(session, corpus)
        assert postings.block_count(session, corpus) < before * 3 // 2


def test_the_migration_builds_the_blocks_of_datasets_that_existed_before_it(db, database_url, corpus):
    with db.session() as session:
        built = postings.block_count(session, corpus)
        query = " ".join(WORDS[:3] + WORDS[200:202])
        before = [
            row.id for row in search_store.top_bm25(session, search_store.prepare_fulltext(session, corpus, query), 10)
        ]
    db.dispose()
    downgrade(database_url, "0006")
    upgrade(database_url)
    with db.session() as session:
        assert postings.block_count(session, corpus) == built
        prepared = search_store.prepare_fulltext(session, corpus, query)
        assert [row.id for row in search_store.top_bm25(session, prepared, 10)] == before


def test_a_rebuild_in_many_ranges_leaves_each_word_at_most_one_short_block(db, corpus, monkeypatch):
    query = " ".join(WORDS[:2] + WORDS[100:103])
    with db.session() as session:
        before = _top(session, corpus, query, pruned=True)
        monkeypatch.setattr(postings, "BUILD_CHUNKS", 7)  # ~57 ranges: most words get a short block in each
        postings.rebuild(session, corpus, fulltext_stats.text_stats(session, corpus).mean_length)
        short = session.execute(
            text(
                "SELECT max(n) FROM (SELECT count(*) AS n FROM fulltext_block WHERE dataset_id = :d "
                "AND cardinality(chunk_ids) < :full GROUP BY lexeme) s"
            ),
            {"d": corpus, "full": postings.BLOCK},
        ).scalar()
        assert short == 1
        assert (
            postings.posting_counts(session, corpus, [WORDS[0]])[WORDS[0]]
            == fulltext_stats.document_frequencies(session, corpus, [WORDS[0]])[WORDS[0]]
        )
        assert _top(session, corpus, query, pruned=True) == before
