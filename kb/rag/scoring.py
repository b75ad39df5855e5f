"""Scoring an evaluation on plain values: ranks, totals (hit@k, MRR, answer and citation hits, latency
percentiles) and a paired bootstrap interval for the difference between two runs.

An expected answer is found in a quote when the quote's text contains it as written (the rule of
`bench/retrieval.py`, so the product and the team's benchmarks give the same figures). Items whose
answers occur in no chunk of the dataset are left out of every rate: search cannot find what is not there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TOP = 5
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 20  # fixed, so the same two runs always show the same interval


@dataclass(frozen=True)
class Outcome:
    """What one item got in one run."""

    answer_rank: int | None
    source_rank: int | None = None
    expects_source: bool = False
    in_corpus: bool = True
    answer_hit: bool | None = None
    citation_hit: bool | None = None
    latency_ms: float = 0.0


def first_rank(texts: Sequence[str], expected: Sequence[str]) -> int | None:
    """The 1-based rank of the first text holding one of the expected strings, or None."""
    return next((rank for rank, text in enumerate(texts, 1) if any(e and e in text for e in expected)), None)


def source_rank(sources: Sequence[str], expected: str | None) -> int | None:
    """The 1-based rank of the first quote from the expected document (compared by name, case-insensitive)."""
    if not expected:
        return None
    wanted = expected.strip().casefold()
    return next((rank for rank, source in enumerate(sources, 1) if source.strip().casefold() == wanted), None)


def mentions(reply: str, expected: Sequence[str]) -> bool:
    """Whether an answer's reply contains an expected string (case-insensitive: a reply rewords freely)."""
    folded = reply.casefold()
    return any(e and e.casefold() in folded for e in expected)


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (the one `bench/retrieval.py` reports); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def hit(outcome: Outcome, k: int) -> float:
    return 1.0 if outcome.answer_rank is not None and outcome.answer_rank <= k else 0.0


def reciprocal_rank(outcome: Outcome, k: int = TOP) -> float:
    rank = outcome.answer_rank
    return 1.0 / rank if rank is not None and rank <= k else 0.0


def _rate(values: list[bool | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 4) if known else None


def totals(outcomes: Sequence[Outcome]) -> dict[str, float | int | None]:
    """The run's totals over the items whose answers exist in the dataset; latencies over every item."""
    counted = [o for o in outcomes if o.in_corpus]
    n = len(counted)
    latencies = [o.latency_ms for o in outcomes]
    with_source = [o for o in counted if o.expects_source]
    return {
        "items": len(outcomes),
        "counted": n,
        "not_in_documents": len(outcomes) - n,
        "hit@1": round(sum(hit(o, 1) for o in counted) / n, 4) if n else None,
        "hit@5": round(sum(hit(o, TOP) for o in counted) / n, 4) if n else None,
        "mrr": round(sum(reciprocal_rank(o) for o in counted) / n, 4) if n else None,
        "source_hit@5": _rate([o.source_rank is not None and o.source_rank <= TOP for o in with_source]),
        "answer_hit": _rate([o.answer_hit for o in counted]),
        "citation_hit": _rate([o.citation_hit for o in counted]),
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
    }


@dataclass(frozen=True)
class Difference:
    """B minus A for one measure, with a paired bootstrap interval at `level`."""

    a: float
    b: float
    delta: float
    low: float
    high: float
    level: float = 0.95

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], *, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
) -> Difference:
    """Resample the paired items with replacement; the interval is the 2.5th–97.5th percentile of mean(b - a)."""
    if len(a) != len(b):
        raise ValueError("a paired bootstrap needs one value of each run per item")
    first, second = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if first.size == 0:
        return Difference(0.0, 0.0, 0.0, 0.0, 0.0)
    diffs = second - first
    picks = np.random.default_rng(seed).integers(0, diffs.size, size=(samples, diffs.size))
    means = diffs[picks].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Difference(
        round(float(first.mean()), 4),
        round(float(second.mean()), 4),
        round(float(diffs.mean()), 4),
        round(float(low), 4),
        round(float(high), 4),
    )
