"""Local embedders run by sentence-transformers: prefixes, batching, L2-normalised float32."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from kb.errors import ServiceUnavailable
from kb.ml.specs import ModelSpec

VARIANTS = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


class SentenceTransformerEmbedder:
    """An Embedder over one SentenceTransformer; a lock keeps concurrent callers from fighting over 2 cores."""

    def __init__(self, spec: ModelSpec, model: object):
        self.name = spec.name
        self.model = model
        self.query_prefix = spec.query_prefix
        self.document_prefix = spec.document_prefix
        self.normalize = spec.normalize
        # sentence-transformers 6 renamed the dimension getter; older versions only have the first name
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = int(dimension())
        self.max_tokens = int(model.max_seq_length)
        self.variant = VARIANTS.get(next(model.parameters()).dtype, "fp32")
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        """Tokens as the model sees them (without [CLS]/[SEP]); beyond max_tokens the model truncates."""
        return len(self.model.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        with self._lock, torch.inference_mode():
            vectors = self.model.encode(
                texts,
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=self.normalize,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    def embed_documents(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """(n, dim) float32, each text with the document prefix."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._encode([self.document_prefix + text for text in texts], batch_size)

    def embed_query(self, text: str) -> np.ndarray:
        """(dim,) float32, with the query prefix."""
        return self._encode([self.query_prefix + text], 1)[0]


def load_sentence_transformer(spec: ModelSpec, folder_or_id: str, trust_remote_code: bool) -> SentenceTransformerEmbedder:
    """Load a sentence-transformers model on CPU in the spec's dtype."""
    from sentence_transformers import SentenceTransformer

    dtype = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16}[spec.dtype]
    try:
        model = SentenceTransformer(
            folder_or_id,
            device="cpu",
            trust_remote_code=trust_remote_code,
            model_kwargs={"dtype": dtype} if dtype is not None else None,
        )
    except (OSError, ValueError) as exc:
        hint = "" if Path(folder_or_id).exists() else " (hub ids must already be in the local Hugging Face cache)"
        raise ServiceUnavailable(
            f"cannot load embedding model '{spec.name}' from {folder_or_id}{hint}: {exc}", code="model_unavailable"
        ) from exc
    model.eval()
    if spec.context_length:
        model.max_seq_length = min(spec.context_length, model.max_seq_length or spec.context_length)
    return SentenceTransformerEmbedder(spec, model)
