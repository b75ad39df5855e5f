"""Optional reranking with a sentence-transformers CrossEncoder named by `KB_RERANK_MODEL`.

None is bundled. The model loads once per process on first use; a model that cannot be loaded or
run raises `RerankerFailed`, which the search service reports in its warnings instead of quietly
returning unreranked results as if nothing happened.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import replace

from kb.errors import ServiceUnavailable
from kb.rag.retrieval import Quote

log = logging.getLogger(__name__)

_models: dict[str, object] = {}
_lock = threading.Lock()


class RerankerFailed(ServiceUnavailable):
    code = "reranker_failed"


def load_reranker(name_or_path: str, torch_threads: int):
    """The CrossEncoder for a hub id (already in the local cache) or a folder, loaded once per process."""
    with _lock:
        if name_or_path not in _models:
            from kb.ml.loading import use_torch_threads

            use_torch_threads(torch_threads)
            try:
                from sentence_transformers import CrossEncoder

                _models[name_or_path] = CrossEncoder(name_or_path, device="cpu")
            except Exception as exc:  # any loading failure is reported the same way, with its reason
                raise RerankerFailed(f"cannot load reranker '{name_or_path}': {exc}") from exc
        return _models[name_or_path]


def rerank(quotes: Sequence[Quote], query: str, model_name: str, *, torch_threads: int = 2) -> list[Quote]:
    """The quotes reordered by the cross-encoder's relevance; each records `scores/ranks["rerank"]`.

    The quote's own `score` (the retrieval score the threshold uses) is left as it was.
    """
    if not quotes:
        return []
    model = load_reranker(model_name, torch_threads)
    try:
        relevance = model.predict([(query, q.text) for q in quotes], show_progress_bar=False)
    except Exception as exc:
        raise RerankerFailed(f"reranker '{model_name}' failed: {exc}") from exc
    order = sorted(range(len(quotes)), key=lambda i: -float(relevance[i]))
    return [
        replace(
            quotes[i],
            ranks={**quotes[i].ranks, "rerank": rank},
            scores={**quotes[i].scores, "rerank": float(relevance[i])},
        )
        for rank, i in enumerate(order, 1)
    ]
