"""Search against a real PostgreSQL: each mode, thresholds, budgets, dataset and status filtering, indexes."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event, text

from kb.db.engine import Database
from kb.db.store import chunks as chunk_store
from kb.db.store import datasets as dataset_store
from kb.db.store import search as search_store
from kb.db.textsearch import segment_query
from kb.errors import BadRequest, NotFound
from kb.runtime import Runtime
from kb.services import search as search_service
from kb.services.search import search_datasets
from tests.server.search_support import DOCS, FakeModels, add_collection, add_texts


@pytest.fixture
def models():
    return FakeModels()


@pytest.fixture
def deps(db, settings, models):
    return Runtime(settings, db, models)


@pytest.fixture
def docs(db, models) -> dict:
    """One dataset holding DOCS in a ready collection; returns its id and the chunk ids in DOCS order."""
    with db.session() as session:
        dataset = dataset_store.add_dataset(
            session, name="docs", embed_model="hash", embed_dim=64, embed_variant="hash-v1"
        )
        ids = add_texts(session, dataset.id, add_collection(session, dataset.id, "docs.md"), DOCS, models.embedder())
        session.commit()
    return {"dataset": dataset.id, "ids": ids}


@pytest.mark.parametrize(
    ("mode", "query", "expected"),
    [
        ("vector", "how do green plants turn sunlight into sugar", 2),
        ("fulltext", "Great Wall kilometres", 1),
        ("hybrid", "pgvector HNSW indexes for vectors", 0),
        ("fulltext", "上海交通大学在哪里", 3),
        ("hybrid", "中国的首都是哪里？", 4),
    ],
)
def test_each_mode_puts_the_matching_chunk_first(deps, docs, mode, query, expected):
    result = search_datasets(deps, [docs["dataset"]], query, mode=mode, limit=3)
    assert result.mode == mode and result.warnings == []
    assert result.quotes[0].chunk_id == docs["ids"][expected]
    assert all(0.0 <= q.score <= 1.0 for q in result.quotes)
    assert {"total_ms"} <= result.timings.keys()


def test_hybrid_hits_name_the_lists_that_found_them_with_ranks_and_scores(deps, docs):
    top = search_datasets(deps, [docs["dataset"]], "Great Wall of China", mode="hybrid").quotes[0]
    assert top.sources == ("vector", "fulltext")
    assert top.ranks == {"vector": 1, "fulltext": 1}
    assert set(top.scores) == {"vector", "fulltext"} and top.source == "docs.md"


@pytest.mark.parametrize("mode", ["vector", "fulltext", "hybrid"])
def test_min_score_filters_in_every_mode(deps, docs, mode):
    query = "volcanoes and magma in the crust of China"
    everything = search_datasets(deps, [docs["dataset"]], query, mode=mode, limit=10).quotes
    assert len(everything) >= 2
    cut = (everything[0].score + everything[1].score) / 2
    kept = search_datasets(deps, [docs["dataset"]], query, mode=mode, limit=10, min_score=cut).quotes
    assert [q.chunk_id for q in kept] == [everything[0].chunk_id]
    assert search_datasets(deps, [docs["dataset"]], query, mode=mode, min_score=1.0).quotes == []


def test_quote_budget_counts_tokens_with_the_chat_model_and_honours_limit(deps, docs, models):
    query = "Great Wall of China and volcanoes and plants"
    ranked = search_datasets(deps, [docs["dataset"]], query, limit=10).quotes
    first_cost = models.chat().count_tokens(ranked[0].text)
    budgeted = search_datasets(deps, [docs["dataset"]], query, limit=10, max_tokens=first_cost + 1).quotes
    assert [q.chunk_id for q in budgeted] == [ranked[0].chunk_id]
    assert len(search_datasets(deps, [docs["dataset"]], query, limit=2).quotes) == 2


def test_another_datasets_chunks_never_appear(deps, docs, db, models):
    with db.session() as session:
        other = dataset_store.add_dataset(
            session, name="other", embed_model="hash", embed_dim=64, embed_variant="hash-v1"
        )
        other_ids = add_texts(session, other.id, add_collection(session, other.id, "o.md"), DOCS, models.embedder())
        session.commit()
    for mode in ("vector", "fulltext", "hybrid"):
        quotes = search_datasets(deps, [docs["dataset"]], "Great Wall of China", mode=mode, limit=20).quotes
        assert quotes and not {q.chunk_id for q in quotes} & set(other_ids)
    both = search_datasets(deps, [docs["dataset"], other.id], "Great Wall of China", limit=20).quotes
    assert {q.dataset_id for q in both} == {docs["dataset"], other.id}


def test_chunks_of_collections_not_ready_never_appear_but_manual_ones_do(deps, docs, db, models):
    with db.session() as session:
        pending = add_collection(session, docs["dataset"], "pending.md", status="embedding")
        failed = add_collection(session, docs["dataset"], "failed.md", status="error")
        manual = add_collection(session, docs["dataset"], "manual", status="queued")
        hidden = add_texts(session, docs["dataset"], pending, ["Quokkas live on Rottnest Island."], models.embedder())
        hidden += add_texts(session, docs["dataset"], failed, ["Quokkas are small marsupials."], models.embedder())
        shown = add_texts(
            session, docs["dataset"], manual, ["Quokkas smile for photographs."], models.embedder(), kind="manual"
        )
        session.commit()
    for mode in ("vector", "fulltext", "hybrid"):
        found = {q.chunk_id for q in search_datasets(deps, [docs["dataset"]], "quokkas", mode=mode, limit=20).quotes}
        assert not found & set(hidden), mode
        assert set(shown) <= found, mode


def test_a_user_dictionary_keeps_a_domain_term_whole_at_index_and_query_time(deps, db, models):
    texts = ["向量数据库用于存储向量。", "这个数据库很大，向量很多。"]
    with db.session() as session:
        dataset = dataset_store.add_dataset(
            session, name="zh", embed_model="hash", embed_dim=64, embed_variant="hash-v1"
        )
        ids = add_texts(session, dataset.id, add_collection(session, dataset.id, "zh.md"), texts, models.embedder())
        session.commit()
        plain, _ = search_store.fulltext_search(session, dataset.id, segment_query("向量数据库"), limit=5)
        session.rollback()
        assert {h.chunk_id for h in plain.hits} == set(ids), "without the dictionary the term's parts match both"
        dataset_store.update_dataset(session, dataset.id, user_dictionary=["向量数据库"])
        session.commit()
    result = search_datasets(deps, [dataset.id], "向量数据库", mode="fulltext")
    assert [q.chunk_id for q in result.quotes] == [ids[0]], "the re-segmented index and the query agree on the term"


def test_unknown_dataset_and_bad_input_are_reported_clearly(deps, docs):
    with pytest.raises(NotFound):
        search_datasets(deps, [docs["dataset"] + 99], "anything")
    for kwargs, word in [
        ({"query": "  "}, "empty"),
        ({"query": "x", "mode": "semantic"}, "mode"),
        ({"query": "x", "limit": 0}, "limit"),
        ({"query": "x", "min_score": 1.5}, "min_score"),
        ({"query": "x", "max_tokens": 0}, "max_tokens"),
    ]:
        query = kwargs.pop("query")
        with pytest.raises(BadRequest, match=word):
            search_datasets(deps, [docs["dataset"]], query, **kwargs)


def test_ef_search_is_set_for_the_searching_transaction_only(db, docs, models):
    vector = models.embedder().embed_query("Great Wall")
    with db.session() as session:
        default = session.execute(text("SHOW hnsw.ef_search")).scalar()
        search_store.vector_search(session, docs["dataset"], vector, limit=3, ef_search=37)
        assert session.execute(text("SHOW hnsw.ef_search")).scalar() == "37"
        session.rollback()
        assert session.execute(text("SHOW hnsw.ef_search")).scalar() == default


def test_vector_search_uses_the_datasets_hnsw_index_at_realistic_size(db):
    """2,000 chunks of 384-d: the search's own SQL (with the ready-collection filter) must walk the index."""
    rng = random.Random(5)
    with db.session() as session:
        dataset = dataset_store.add_dataset(
            session, name="big", embed_model="x", embed_dim=384, embed_variant="hash-v1"
        )
        collection_id = add_collection(session, dataset.id, "big.md")
        vectors = [[rng.gauss(0, 1) for _ in range(384)] for _ in range(2000)]
        chunk_store.add_chunks(
            session,
            dataset.id,
            collection_id,
            [chunk_store.NewChunk(q=f"chunk {i}", embedding=v, position=i) for i, v in enumerate(vectors)],
        )
        session.commit()
        session.execute(text("ANALYZE"))
        plan = "\n".join(
            session.execute(
                text("EXPLAIN " + search_store.vector_search_sql(dataset.id, 384, 50)),
                {"q": chunk_store.vector_literal(vectors[7])},
            ).scalars()
        )
    assert f"Index Scan using {dataset_store.vector_index_name(dataset.id)}" in plan, plan


def test_a_failing_reranker_is_reported_and_results_still_come_back(db, settings, models, docs, tmp_path):
    broken = settings.model_copy(update={"rerank_model": str(tmp_path / "no-such-reranker")})
    deps = Runtime(broken, db, models)
    result = search_datasets(deps, [docs["dataset"]], "Great Wall of China", rerank=True)
    assert result.quotes and result.quotes[0].chunk_id == docs["ids"][1]
    assert len(result.warnings) == 1 and "no-such-reranker" in result.warnings[0]
    assert "not reranked" in result.warnings[0]


def test_asking_for_a_rerank_without_a_reranker_says_so(deps, docs):
    result = search_datasets(deps, [docs["dataset"]], "Great Wall of China", rerank=True)
    assert any("KB_RERANK_MODEL" in w for w in result.warnings)


def test_score_completion_gives_a_chunk_the_score_its_own_list_would(db, docs, models):
    query = "green plants in China turn sunlight into sugar"
    vector = models.embedder().embed_query(query)
    with db.session() as session:
        listed, prepared = search_store.fulltext_search(session, docs["dataset"], segment_query(query), limit=10)
        looked_up = search_store.fulltext_scores(session, prepared, docs["ids"])
        walked = search_store.vector_search(session, docs["dataset"], vector, limit=10)
        by_id = search_store.vector_scores(session, docs["dataset"], vector, docs["ids"])
    assert len(listed.hits) >= 2
    assert looked_up == pytest.approx({h.chunk_id: h.scaled for h in listed.hits})
    assert by_id == pytest.approx({h.chunk_id: h.scaled for h in walked.hits})


def test_hybrid_search_lets_go_of_its_connection_while_its_full_text_half_waits_for_one(
    database_url, settings, models, docs, monkeypatch
):
    """Twenty concurrent searches filled the pool (10 + 10) under load: a search holding a connection while
    its full-text thread waits for another would leave both waiting until the pool timeout, then fail."""
    small = Database(database_url, pool_size=1)  # two connections in all
    deps = Runtime(settings, small, models)
    vector_ran, full_text_may_run = threading.Event(), threading.Event()
    event.listen(small.engine, "after_cursor_execute", lambda *args: "<=>" in args[2] and vector_ran.set())
    busy = ThreadPoolExecutor(1)
    monkeypatch.setattr(search_service, "_fulltext_threads", busy)
    busy.submit(full_text_may_run.wait)  # the search's full-text half queues behind this
    try:
        with small.engine.connect() as other, ThreadPoolExecutor(1) as caller:
            other.execute(text("SELECT 1"))  # another request holds the other connection
            search = caller.submit(search_datasets, deps, [docs["dataset"]], "pgvector HNSW indexes", mode="hybrid")
            assert vector_ran.wait(30)
            full_text_may_run.set()
            result = search.result(timeout=60)
    finally:
        full_text_may_run.set()
        busy.shutdown()
        small.dispose()
    assert result.quotes[0].chunk_id == docs["ids"][0]
    assert "fulltext" in result.quotes[0].sources


def test_searches_past_the_concurrency_limit_wait_their_turn_and_report_the_wait(deps, docs):
    """A burst of searches must not take every core from answers being generated: beyond the limit they queue."""
    import threading

    from kb.services.sharing import core_sharing

    settings = deps.settings.model_copy(update={"search_concurrency": 1})
    gated = Runtime(settings, deps.db, deps.registry)
    results = []
    running = core_sharing(1, settings.search_hold_ms).search()
    running.__enter__()  # a search already running
    waiting = threading.Thread(target=lambda: results.append(search_datasets(gated, [docs["dataset"]], "Great Wall")))
    try:
        waiting.start()
        waiting.join(1.0)
        assert waiting.is_alive() and not results, "the second search waits while the first holds the only turn"
    finally:
        running.__exit__(None, None, None)
    waiting.join(30)
    assert results and results[0].quotes, "it runs once the turn is free"
    assert results[0].timings["queued_ms"] > 0
    assert results[0].timings["total_ms"] >= results[0].timings["queued_ms"]
