"""Search one or more datasets: the use case behind `POST /api/datasets/{id}/search`, `kb search` and answering."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from kb.db.store import datasets as dataset_store
from kb.db.store import search as search_store
from kb.db.store.datasets import DatasetRecord
from kb.db.store.search import ListResult
from kb.db.textsearch import segment_query
from kb.errors import BadRequest, Conflict, KBError, not_found
from kb.rag.rerank import RerankerFailed, rerank
from kb.rag.retrieval import (
    MODES,
    Quote,
    above_threshold,
    dense_weight,
    fuse,
    merge_datasets,
    single_list,
    within_budget,
)
from kb.runtime import Runtime
from kb.services import sharing
from kb.services.datasets import EmbedderUnavailable

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
MAX_QUERY_CHARS = 2000
RERANK_DEPTH = 20  # how many fused candidates the cross-encoder reads (it costs ~10-50 ms each on CPU)


@dataclass(frozen=True)
class SearchResult:
    """Quotes best first, the mode used, timings in milliseconds, and what did not go as asked."""

    quotes: list[Quote]
    mode: str
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def vocabulary_coverage(embedder, text: str) -> float:
    """Share of the text's tokens that the embedder's tokenizer knows (not `[UNK]`); 1 when it cannot tell.

    An English-only embedder maps much of a Chinese text to `[UNK]` (all-MiniLM-L6-v2: ~65% of the
    cmrc questions), so this is a measured, model-derived sign of how much of the query it can read.
    """
    tokenizer = getattr(embedder, "tokenizer", None) or getattr(getattr(embedder, "model", None), "tokenizer", None)
    unknown = getattr(tokenizer, "unk_token_id", None)
    if tokenizer is None or unknown is None:
        return 1.0
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return 1.0 - ids.count(unknown) / len(ids) if ids else 1.0


def check_query_length(query: str, what: str = "query") -> None:
    """Refuse a query (or a question that will be searched) longer than the search accepts."""
    if len(query) > MAX_QUERY_CHARS:
        raise BadRequest(f"{what} is {len(query)} characters; the limit is {MAX_QUERY_CHARS}", code="query_too_long")


def check_request(query: str, mode: str, limit: int, min_score: float, max_tokens: int | None) -> str:
    """The query stripped, or a BadRequest saying what to change."""
    if mode not in MODES:
        raise BadRequest(f"mode must be one of {', '.join(MODES)}, not '{mode}'", code="invalid_mode")
    query = (query or "").strip()
    if not query:
        raise BadRequest("query is empty: send the question or words to search for", code="empty_query")
    check_query_length(query)
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}, not {limit}", code="invalid_limit")
    if not 0.0 <= min_score <= 1.0:
        raise BadRequest(f"min_score must be between 0 and 1, not {min_score}", code="invalid_min_score")
    if max_tokens is not None and max_tokens < 1:
        raise BadRequest(f"max_tokens must be at least 1, not {max_tokens}", code="invalid_max_tokens")
    return query


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def add(self, name: str, started: float) -> None:
        """Add the time since `started` to step `name`."""
        self.add_ms(name, (time.perf_counter() - started) * 1000)

    def add_ms(self, name: str, elapsed_ms: float) -> None:
        self.timings[name] = round(self.timings.get(name, 0.0) + elapsed_ms, 2)


def _load_datasets(session, dataset_ids: Sequence[int]) -> list[DatasetRecord]:
    if not dataset_ids:
        raise BadRequest("no dataset to search", code="no_dataset")
    datasets = []
    for dataset_id in dict.fromkeys(dataset_ids):
        record = dataset_store.get_dataset(session, dataset_id)
        if record is None:
            raise not_found("dataset", dataset_id)
        datasets.append(record)
    return datasets


def _embed_query(registry, dataset: DatasetRecord, query: str, cache: dict) -> tuple[object, float]:
    """The query vector from the dataset's own embedding model, and its hybrid weight for this query."""
    key = (dataset.embed_model, dataset.embed_variant)  # the variant that made the dataset's vectors
    if key not in cache:
        try:
            embedder = registry.embedder(dataset.embed_model, variant=dataset.embed_variant)
        except KBError as exc:
            raise EmbedderUnavailable(
                f"dataset '{dataset.name}' cannot search by meaning: its embedding model '{dataset.embed_model}' "
                f"({dataset.embed_variant}) cannot be loaded ({exc.message.rstrip('.')}); its stored vectors are kept"
            ) from exc
        weight = dense_weight(vocabulary_coverage(embedder, query), embedder.hybrid_weight)
        cache[key] = (embedder, embedder.embed_query(query), weight)
    embedder, vector, weight = cache[key]
    if embedder.dim != dataset.embed_dim:
        raise Conflict(
            f"dataset '{dataset.name}' holds {dataset.embed_dim}-d vectors but model '{dataset.embed_model}' now "
            f"gives {embedder.dim}-d ones; re-embed the dataset or configure the model it was built with",
            code="embedding_mismatch",
        )
    return vector, weight


@dataclass
class _Run:
    """One search's inputs and what it gathers along the way."""

    query: str
    mode: str
    pool: int
    settings: object
    registry: object
    timer: _Timer = field(default_factory=_Timer)
    warnings: list[str] = field(default_factory=list)
    embedded: dict[str, tuple] = field(default_factory=dict)
    weights: dict[int, float] = field(default_factory=dict)

    def query_vector(self, dataset: DatasetRecord):
        """The dataset's query vector (its dense weight noted), or None when hybrid must go on without it."""
        step = time.perf_counter()
        try:
            vector, weight = _embed_query(self.registry, dataset, self.query, self.embedded)
        except KBError as exc:
            if self.mode == "vector":
                raise
            self.warnings.append(f"dataset '{dataset.name}': vector search skipped ({exc.message})")
            return None
        finally:
            self.timer.add("embed_ms", step)
        self.weights[dataset.id] = weight
        return vector

    def vector_list(self, session, dataset: DatasetRecord, vector) -> ListResult:
        step = time.perf_counter()
        found = search_store.vector_search(
            session, dataset.id, vector, limit=self.pool, ef_search=self.settings.hnsw_ef_search
        )
        self.timer.add("vector_ms", step)
        return found

    def complete(self, session, dataset_id: int, vector, vectors: ListResult, fulltext: ListResult, prepared) -> None:
        """Score completion: each list's finds that the other list missed get their exact score there too."""
        step = time.perf_counter()
        missed_by_fulltext = [h.chunk_id for h in vectors.hits if h.chunk_id not in fulltext.scores_of]
        fulltext.scores_of.update(search_store.fulltext_scores(session, prepared, missed_by_fulltext))
        missed_by_vector = [h.chunk_id for h in fulltext.hits if h.chunk_id not in vectors.scores_of]
        vectors.scores_of.update(search_store.vector_scores(session, dataset_id, vector, missed_by_vector))
        self.timer.add("complete_ms", step)


# Full text runs in its own connection while the search's thread embeds the query and walks the HNSW
# index: on two cores the two overlap almost entirely. Its threads compute at search priority (kb.services.sharing).
_fulltext_threads = ThreadPoolExecutor(
    max_workers=4, thread_name_prefix="kb-fulltext", initializer=sharing.lower_thread_priority
)


def _fulltext(db, dataset: DatasetRecord, query: str, pool: int, pruned: bool):
    started = time.perf_counter()
    with db.session() as session:
        result, prepared = search_store.fulltext_search(
            session, dataset.id, segment_query(query, dataset.user_dictionary), limit=pool, pruned=pruned
        )
        session.rollback()
    return result, prepared, (time.perf_counter() - started) * 1000


def search_datasets(
    rt: Runtime,
    dataset_ids: Sequence[int],
    query: str,
    *,
    mode: str = "hybrid",
    limit: int = DEFAULT_LIMIT,
    min_score: float = 0.0,
    max_tokens: int | None = None,
    rerank: bool = False,
    chat_model: str | None = None,
    for_answer: bool = False,
) -> SearchResult:
    """Find the quotes for `query` in the datasets: search, fuse, threshold, (rerank), cut to the budget.

    `max_tokens` counts quote text with the tokenizer of `chat_model` (default: the configured chat model).
    `for_answer` marks the retrieval of an answer, which goes before other searches (kb.services.sharing).
    """
    query = check_request(query, mode, limit, min_score, max_tokens)
    started = time.perf_counter()
    cores = sharing.core_sharing(rt.settings.search_concurrency, rt.settings.search_hold_ms)
    args = (rt, dataset_ids, query, mode, limit, min_score, max_tokens, rerank, chat_model)
    with cores.search(for_answer=for_answer) as queued_ms:
        # An answer's retrieval computes on its own thread; other searches on the low-priority ones.
        result = _search(*args) if for_answer else cores.pool.submit(_search, *args).result()
    result.timings["queued_ms"] = round(queued_ms, 2)
    result.timings["total_ms"] = round((time.perf_counter() - started) * 1000, 2)  # the wait included
    return result


def _search(rt: Runtime, dataset_ids, query, mode, limit, min_score, max_tokens, rerank, chat_model) -> SearchResult:
    settings, registry = rt.settings, rt.registry
    run = _Run(query, mode, max(limit, settings.search_candidates), settings, registry)
    vector_lists, fulltext_lists = [], []
    with rt.db.session() as session:
        datasets = _load_datasets(session, dataset_ids)
        pending = {}
        if mode != "vector":
            pending = {
                d.id: _fulltext_threads.submit(_fulltext, rt.db, d, query, run.pool, settings.fulltext_pruning)
                for d in datasets
            }
        for dataset in datasets:
            vector = run.query_vector(dataset) if mode != "fulltext" else None
            vectors = run.vector_list(session, dataset, vector) if vector is not None else None
            if vectors is not None:
                vector_lists.append(vectors)
            if dataset.id in pending:
                # Give the connection back while waiting: the full-text thread needs one from the same pool, and
                # searches each holding one while their full text waits can leave none (20 clients kept it full).
                session.rollback()
                fulltext, prepared, elapsed = pending[dataset.id].result()
                run.timer.add_ms("fulltext_ms", elapsed)
                fulltext_lists.append(fulltext)
                if vectors is not None:
                    run.complete(session, dataset.id, vector, vectors, fulltext, prepared)
        session.rollback()  # a read-only transaction; SET LOCAL settings end with it
    step = time.perf_counter()
    if mode == "hybrid":
        quotes = fuse(
            merge_datasets(vector_lists, run.pool), merge_datasets(fulltext_lists, run.pool), vector_weights=run.weights
        )
    else:
        name, lists = ("vector", vector_lists) if mode == "vector" else ("fulltext", fulltext_lists)
        quotes = single_list(name, merge_datasets(lists, run.pool))
    quotes = above_threshold(quotes, min_score)
    run.timer.add("fuse_ms", step)
    if rerank:
        quotes = _reranked(quotes, query, limit, settings, run.timer, run.warnings)
    count_tokens = registry.chat(chat_model).count_tokens if max_tokens is not None else None
    quotes = within_budget(quotes, limit=limit, max_tokens=max_tokens, count_tokens=count_tokens)
    return SearchResult(quotes=quotes, mode=mode, timings=run.timer.timings, warnings=run.warnings)


def _reranked(quotes: list[Quote], query: str, limit: int, settings, timer: _Timer, warnings: list[str]) -> list[Quote]:
    """The first candidates reordered by the configured cross-encoder, or unchanged with a warning saying why."""
    if not settings.rerank_model:
        warnings.append(
            "rerank was requested but no reranker is configured (set KB_RERANK_MODEL); results are not reranked"
        )
        return quotes
    step = time.perf_counter()
    depth = max(limit, RERANK_DEPTH)
    try:
        head = rerank(quotes[:depth], query, settings.rerank_model, torch_threads=settings.torch_threads)
    except RerankerFailed as exc:
        log.warning("%s", exc.message)
        warnings.append(f"{exc.message}; results are not reranked")
        return quotes
    finally:
        timer.add("rerank_ms", step)
    return head + quotes[depth:]
