"""Scoring an evaluation: ranks as bench/retrieval.py counts them, totals that leave out answers no document
holds, nearest-rank percentiles, and a paired bootstrap interval that is fixed by its seed."""

from __future__ import annotations

import pytest

from kb.rag.scoring import Outcome, first_rank, mentions, paired_bootstrap, percentile, source_rank, totals


def test_the_rank_is_that_of_the_first_quote_holding_an_expected_string_as_written():
    quotes = ["Bern is the de facto capital.", "The Aare flows through Bern.", "the aare"]
    assert first_rank(quotes, ["Aare"]) == 2
    assert first_rank(quotes, ["Zurich", "capital"]) == 1
    assert first_rank(quotes, ["AARE RIVER"]) is None
    assert first_rank(quotes, [""]) is None  # an empty string would match everything


def test_the_expected_document_is_matched_by_name_whatever_its_case():
    assert source_rank(["a.md", "Squad_Bern.md"], "squad_bern.md") == 2
    assert source_rank(["a.md"], None) is None


def test_a_reply_mentions_an_answer_in_any_case():
    assert mentions("It was built by THE ROMANS.", ["the Romans"])
    assert not mentions("Nobody knows.", ["the Romans"])


def test_totals_leave_out_items_whose_answers_are_in_no_document_but_keep_their_latency():
    outcomes = [
        Outcome(answer_rank=1, latency_ms=10),
        Outcome(answer_rank=3, latency_ms=20),
        Outcome(answer_rank=None, latency_ms=30),
        Outcome(answer_rank=None, in_corpus=False, latency_ms=400),
    ]
    result = totals(outcomes)
    assert result["items"] == 4 and result["counted"] == 3 and result["not_in_documents"] == 1
    assert result["hit@1"] == pytest.approx(1 / 3, abs=1e-4)
    assert result["hit@5"] == pytest.approx(2 / 3, abs=1e-4)
    assert result["mrr"] == pytest.approx((1 + 1 / 3) / 3, abs=1e-4)
    assert result["p95_ms"] == 400 and result["p50_ms"] == 20
    assert result["answer_hit"] is None and result["source_hit@5"] is None


def test_source_hits_count_only_items_that_name_a_document():
    outcomes = [
        Outcome(1, source_rank=2, expects_source=True),
        Outcome(1, source_rank=None, expects_source=True),
        Outcome(1),
    ]
    assert totals(outcomes)["source_hit@5"] == 0.5


def test_percentiles_are_nearest_rank_as_in_bench_retrieval():
    assert percentile(list(range(1, 101)), 0.95) == 95
    assert percentile([5.0], 0.5) == 5.0
    assert percentile([], 0.5) == 0.0


def test_the_bootstrap_interval_holds_the_mean_difference_and_is_the_same_every_time():
    a = [1.0] * 30 + [0.0] * 70
    b = [1.0] * 60 + [0.0] * 40
    first, again = paired_bootstrap(a, b), paired_bootstrap(a, b)
    assert first == again
    assert first.delta == pytest.approx(0.3)
    assert 0 < first.low < 0.3 < first.high < 0.5 and first.significant


def test_two_identical_runs_differ_by_nothing_and_not_significantly():
    same = paired_bootstrap([1.0, 0.0, 1.0], [1.0, 0.0, 1.0])
    assert (same.delta, same.low, same.high, same.significant) == (0.0, 0.0, 0.0, False)
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0, 0.0])
