"""Fusion, thresholds, budgets and full-text scoring as pure functions on dataclasses."""

from __future__ import annotations

import pytest

from kb.db.ranking import bm25_share, fulltext_score, proximity_share
from kb.db.store.search import ChunkHit, ListResult
from kb.rag.retrieval import (
    DENSE_WEIGHT,
    above_threshold,
    dense_weight,
    fuse,
    merge_datasets,
    single_list,
    within_budget,
)
from kb.testing import EchoChatModel


def hit(
    chunk_id: int, scaled: float, rank: int, *, dataset_id: int = 1, q: str = "", score: float | None = None
) -> ChunkHit:
    return ChunkHit(
        chunk_id=chunk_id,
        collection_id=10,
        dataset_id=dataset_id,
        source="doc.md",
        q=q or f"chunk {chunk_id}",
        a="",
        page=None,
        heading="",
        token_count=0,
        score=scaled if score is None else score,
        scaled=scaled,
        rank=rank,
    )


def ranked(*pairs: tuple[int, float], dataset_id: int = 1, extra: dict[int, float] | None = None) -> ListResult:
    hits = [hit(cid, s, rank, dataset_id=dataset_id) for rank, (cid, s) in enumerate(pairs, 1)]
    return ListResult(hits, {**{h.chunk_id: h.scaled for h in hits}, **(extra or {})})


def test_fusion_removes_duplicates_and_records_every_list_that_found_a_chunk():
    vector = ranked((1, 0.9), (2, 0.5))
    fulltext = ranked((2, 0.8), (3, 0.6), extra={1: 0.1})
    quotes = fuse(vector, fulltext, vector_weights={1: 0.5})
    assert sorted(q.chunk_id for q in quotes) == [1, 2, 3]
    by_id = {q.chunk_id: q for q in quotes}
    assert by_id[2].sources == ("vector", "fulltext") and by_id[2].ranks == {"vector": 2, "fulltext": 1}
    assert by_id[1].sources == ("vector",) and by_id[1].scores == {"vector": 0.9, "fulltext": 0.1}
    assert by_id[3].scores["vector"] == 0.0, "a chunk with no known cosine has none to add"


def test_hybrid_score_is_the_weighted_mean_of_the_two_list_scores():
    quotes = fuse(ranked((1, 0.8)), ranked((1, 0.4)), vector_weights={1: 0.25})
    assert quotes[0].score == pytest.approx(0.25 * 0.8 + 0.75 * 0.4)


def test_a_flat_weak_list_does_not_reorder_what_the_strong_list_found():
    """The failure of rank fusion: a list that cannot tell chunks apart still hands out rank 1."""
    weak_vector = ranked((7, 0.41), (8, 0.40), (9, 0.40), extra={1: 0.39, 2: 0.40})
    strong_fulltext = ranked((1, 0.9), (2, 0.3), extra={7: 0.05, 8: 0.0, 9: 0.0})
    quotes = fuse(weak_vector, strong_fulltext, vector_weights={1: 0.5})
    assert [q.chunk_id for q in quotes][:2] == [1, 2]


def test_chunks_both_lists_like_beat_chunks_only_one_list_loves():
    vector = ranked((1, 0.70), (2, 0.66), extra={3: 0.30})
    fulltext = ranked((3, 0.80), (2, 0.70), extra={1: 0.20})
    assert fuse(vector, fulltext, vector_weights={1: 0.5})[0].chunk_id == 2


def test_dense_weight_follows_the_embedders_coverage_of_the_query():
    assert dense_weight(1.0) == DENSE_WEIGHT
    assert dense_weight(0.35) == pytest.approx(DENSE_WEIGHT * 0.35)
    assert dense_weight(0.0) == 0.0


def test_an_embedder_that_reads_the_language_well_brings_its_own_full_weight():
    assert dense_weight(1.0, 0.9) == pytest.approx(0.9)
    assert dense_weight(0.5, 0.9) == pytest.approx(0.45), "coverage still scales it down"
    assert dense_weight(1.0, 0.0) == 0.0


def test_a_dataset_without_a_vector_search_is_ranked_by_full_text_alone():
    quotes = fuse(ranked(), ranked((1, 0.6), (2, 0.3), dataset_id=4), vector_weights={})
    assert [(q.chunk_id, q.score) for q in quotes] == [(1, 0.6), (2, 0.3)]


def test_lists_of_several_datasets_merge_by_score_with_fresh_ranks():
    merged = merge_datasets([ranked((1, 0.5), (2, 0.2), dataset_id=1), ranked((5, 0.7), dataset_id=2)], limit=2)
    assert [(h.chunk_id, h.rank) for h in merged.hits] == [(5, 1), (1, 2)]
    assert merged.scores_of[2] == 0.2, "scores beyond the cut stay known for fusion"


def test_min_score_drops_quotes_below_it_in_any_mode():
    quotes = single_list("vector", ranked((1, 0.8), (2, 0.5), (3, 0.2)))
    assert [q.chunk_id for q in above_threshold(quotes, 0.5)] == [1, 2]
    assert above_threshold(quotes, 0.0) == quotes


def test_budget_cuts_by_limit_and_by_tokens_of_the_chat_model_in_rank_order():
    counter = EchoChatModel().count_tokens
    texts = ["one two three four", "five six", "seven eight nine", "ten"]
    quotes = single_list("fulltext", ListResult([hit(i, 1 - i / 10, i, q=t) for i, t in enumerate(texts, 1)], {}))
    assert [q.chunk_id for q in within_budget(quotes, limit=2, max_tokens=None, count_tokens=counter)] == [1, 2]
    assert [q.chunk_id for q in within_budget(quotes, limit=10, max_tokens=6, count_tokens=counter)] == [1, 2]
    assert [q.chunk_id for q in within_budget(quotes, limit=10, max_tokens=8, count_tokens=counter)] == [1, 2], (
        "the third quote does not fit, and the fourth is not slipped in after it"
    )
    assert within_budget(quotes, limit=10, max_tokens=3, count_tokens=counter) == []


def test_proximity_rewards_query_terms_found_close_together():
    idf = {"apollo": 1.0, "priest": 2.0, "trojan": 3.0}
    together = {"apollo": [10], "priest": [12], "trojan": [14]}
    scattered = {"apollo": [10], "priest": [60], "trojan": [120]}
    assert proximity_share(together, idf) == pytest.approx(1.0)
    assert proximity_share(scattered, idf) == pytest.approx(0.5), "the best window holds only 'trojan'"
    assert proximity_share({}, idf) == 0.0


def test_fulltext_score_is_on_a_zero_to_one_scale():
    idf = {"a": 1.0, "b": 1.0}
    assert bm25_share(4.4, 2.0) == pytest.approx(1.0)
    assert 0.0 < fulltext_score(1.0, idf, {"a": [1]}) < fulltext_score(2.0, idf, {"a": [1], "b": [2]}) <= 1.0
