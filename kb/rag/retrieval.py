"""Retrieval stages on plain dataclasses: merge per-dataset lists, fuse vector and full text, threshold, budget.

What a score means (the number `min_score` compares with; always 0..1, higher is better):

- vector: the cosine similarity of the query and chunk embeddings (negative similarities count as 0).
- fulltext: the mean of two shares (see `kb.db.ranking`): BM25 divided by the highest BM25 the query
  could reach, and the IDF-weighted share of the query's terms found within one 32-word window.
- hybrid: the weighted mean `w·vector + (1-w)·fulltext` of the two scores above, where both are
  known for every candidate: a chunk that only one list brought gets its exact score in the other
  (its cosine is looked up by id; a chunk sharing no word with the query has a full-text score of 0).

Why a weighted mean of scores and not reciprocal-rank fusion: ranks throw away how sure a list is.
A weak list still hands out ranks 1, 2, 3 with full RRF weight, which is how an English-only embedder
drags RRF down on Chinese (hit@1 0.98 → 0.59 on the cmrc kit). Its scores, by contrast, are flat:
when the embedder cannot tell chunks apart, every cosine is about the same, and a flat score moves no
chunk past another in a weighted mean. Where both lists discriminate, the mean rewards the chunks both
like, which is where fusion beats either list.

The dense weight `w` is `full × coverage`, where coverage is the share of the query's tokens the
embedding model's own tokenizer knows (not `[UNK]`), measured on each query from the model: all-MiniLM-L6-v2
reads English fully (w = 0.5) but maps ~65% of a Chinese question to `[UNK]` (w ≈ 0.17). `full` is the
model's own `hybrid_weight`, else `DENSE_WEIGHT` = 0.5, which trusts a fully covering embedder as much as
full text (MiniLM on the English kit: 0.4, 0.5 and 0.6 give hit@1 0.830, 0.825 and 0.835). A model that
reads both languages well earns more: multilingual-e5-small's 0.9 lifts hybrid hit@1 on both kits above
0.5's and above either list alone (bench/fusion_ablation.py, BENCHMARKS.md issue #16).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from kb.db.store.search import ChunkHit, FoundChunk, ListResult

MODES = ("vector", "fulltext", "hybrid")
DENSE_WEIGHT = 0.5


@dataclass(frozen=True)
class Quote(FoundChunk):
    """A chunk chosen for an answer, with its score and the lists (and ranks there) that found it."""

    score: float
    sources: tuple[str, ...]
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The quote as the chat model reads it: the chunk and, for Q/A chunks, its answer."""
        return f"{self.q}\n{self.a}" if self.a else self.q


def merge_datasets(results: Sequence[ListResult], limit: int) -> ListResult:
    """One list from per-dataset lists of the same kind: best scaled scores first, ranks renumbered."""
    hits = sorted((h for r in results for h in r.hits), key=lambda h: (-h.scaled, h.chunk_id))[:limit]
    scores_of: dict[int, float] = {}
    for result in results:
        scores_of.update(result.scores_of)
    return ListResult([h if h.rank == rank else replace(h, rank=rank) for rank, h in enumerate(hits, 1)], scores_of)


def _quote(
    hit: ChunkHit, score: float, sources: tuple[str, ...], ranks: dict[str, int], scores: dict[str, float]
) -> Quote:
    return Quote(**hit.chunk_fields(), score=score, sources=sources, ranks=ranks, scores=scores)


def single_list(name: str, result: ListResult) -> list[Quote]:
    """Quotes of one list in its own order, scored with its scaled score."""
    return [_quote(h, h.scaled, (name,), {name: h.rank}, {name: h.scaled}) for h in result.hits]


def dense_weight(coverage: float, full: float | None = None) -> float:
    """The hybrid weight of the vector score for a query the embedder covers this much (0..1).

    `full` is the weight of a fully covered query: the embedder's `hybrid_weight`, else DENSE_WEIGHT.
    """
    return (DENSE_WEIGHT if full is None else full) * min(1.0, max(0.0, coverage))


def fuse(vector: ListResult, fulltext: ListResult, *, vector_weights: Mapping[int, float]) -> list[Quote]:
    """Hybrid quotes: every candidate of either list scored `w·vector + (1-w)·fulltext`, best first, no duplicates.

    `vector_weights` gives `w` per dataset id (a dataset without one was not searched by vector: w = 0).
    """
    lists = {"vector": vector, "fulltext": fulltext}
    hits: dict[int, ChunkHit] = {}
    ranks: dict[int, dict[str, int]] = {}
    for name, result in lists.items():
        for hit in result.hits:
            hits.setdefault(hit.chunk_id, hit)
            ranks.setdefault(hit.chunk_id, {})[name] = hit.rank
    quotes = []
    for chunk_id, hit in hits.items():
        scores = {name: result.scores_of.get(chunk_id, 0.0) for name, result in lists.items()}
        weight = min(1.0, max(0.0, vector_weights.get(hit.dataset_id, 0.0)))
        score = weight * scores["vector"] + (1.0 - weight) * scores["fulltext"]
        sources = tuple(name for name in lists if name in ranks[chunk_id])
        quotes.append(_quote(hit, score, sources, ranks[chunk_id], scores))
    return sorted(quotes, key=lambda q: (-q.score, q.chunk_id))


def above_threshold(quotes: Sequence[Quote], min_score: float) -> list[Quote]:
    """Quotes scoring at least `min_score` (0 keeps all)."""
    return [q for q in quotes if q.score >= min_score]


def within_budget(
    quotes: Sequence[Quote], *, limit: int, max_tokens: int | None, count_tokens: Callable[[str], int] | None
) -> list[Quote]:
    """The first quotes, in order, while they fit in `limit` and in `max_tokens` of quote text.

    The first quote that does not fit ends the list: a lower-ranked, shorter one is not slipped in
    after it, so what the model reads is always the best quotes, in order.
    """
    chosen: list[Quote] = []
    used = 0
    for quote in quotes[:limit]:
        if max_tokens is not None and count_tokens is not None:
            cost = count_tokens(quote.text)
            if used + cost > max_tokens:
                break
            used += cost
        chosen.append(quote)
    return chosen
