"""What every local embedder shares: prefixes, length-sorted batches, bounded parallel runs, normalised float32.

Texts are tokenized once (unpadded), sorted longest first and cut into batches, and each batch is
padded here from the kept token ids to its own longest text instead of to the model's window.
Batches run on at most `parallel` threads at once (a query waits for one batch, not for a whole
document), and the vectors come back in the caller's order.

A model whose activations are quantised on the fly (ONNX dynamic int8: one scale for the whole batch
tensor, padding included) gives a text a vector that depends on its batch-mates; such an embedder sets
`solo_texts` and runs every text as a batch of its own, so that a chunk's vector is a function of its
text alone, whichever path (ingestion, re-embedding, an edit, /v1/embeddings) and whichever
neighbours it came with.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from kb.ml.specs import ModelSpec
from kb.ml.tokens import plain_backend, unpadded

Features = dict[str, np.ndarray]
Encoded = dict[str, list[list[int]]]  # input_ids, attention_mask (and token_type_ids) of each text, unpadded
# Padded tokens per batch: 32 texts at MiniLM's full window. Long-window models get fewer texts per batch.
MAX_BATCH_TOKENS = 32 * 256
MIN_PARALLEL_BATCH = 8  # below this, per-run overhead outweighs better balance between threads


def length_buckets(
    lengths: Sequence[int], batch_size: int, max_batch_tokens: int = MAX_BATCH_TOKENS
) -> list[list[int]]:
    """Indices grouped longest first into batches of at most `batch_size` texts and `max_batch_tokens` padded tokens."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        padded = (len(current) + 1) * lengths[current[0]] if current else 0
        if current and (len(current) >= batch_size or padded > max_batch_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


class BucketedEmbedder:
    """An Embedder over a tokenizer and a `_run(features)` that turns one padded batch into vectors."""

    solo_texts = False  # True: every text runs alone (its vector must not depend on what it is batched with)

    def __init__(self, spec: ModelSpec, *, variant: str, dim: int, max_tokens: int, tokenizer: Any, parallel: int = 1):
        self.name = spec.name
        self.variant = variant
        self.dim = dim
        self.max_tokens = max_tokens
        self.query_prefix = spec.query_prefix
        self.document_prefix = spec.document_prefix
        self.normalize = spec.normalize
        self.chunk_tokens = spec.chunk_tokens
        self.hybrid_weight = spec.hybrid_weight
        self.tokenizer = tokenizer
        # A fast tokenizer's truncation/padding state is shared: two threads tokenizing at once can clash.
        self._tokenizer_lock = threading.Lock()
        self._backend = plain_backend(tokenizer)
        if self._backend is not None:
            self._encode_fast = getattr(self._backend, "encode_batch_fast", self._backend.encode_batch)
        self._parallel = parallel
        self._slots = threading.BoundedSemaphore(parallel)
        self._pool = ThreadPoolExecutor(parallel, thread_name_prefix=f"embed-{spec.name}") if parallel > 1 else None

    def _run(self, features: Features) -> np.ndarray:
        """(batch, dim) vectors of one padded batch; subclasses run their model here."""
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        """Tokens as the model sees them (without [CLS]/[SEP]); beyond max_tokens the model truncates."""
        with self._tokenizer_lock:
            if self._backend is None:
                return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            # The chunker counts thousands of short texts per document: the Rust tokenizer alone, without
            # offsets, costs a third less than the transformers wrapper around it. Undo what earlier calls set.
            unpadded(self._backend, self.tokenizer.split_special_tokens)
            return len(self._encode_fast([text], add_special_tokens=False)[0])

    def _encode(self, texts: list[str]) -> Encoded:
        """Each text's token ids (and masks), cut at the window, unpadded: the only time the texts are tokenized."""
        with self._tokenizer_lock:
            encoded = self.tokenizer(texts, truncation=True, max_length=self.max_tokens)
        return {key: list(rows) for key, rows in encoded.items()}

    def _features(self, encoded: Encoded, batch: list[int]) -> Features:
        """The padded int64 arrays of the texts at `batch`, as the tokenizer pads a batch (to its longest text)."""
        width = max(len(encoded["input_ids"][index]) for index in batch)
        left = self.tokenizer.padding_side == "left"
        pad_values = {"input_ids": self.tokenizer.pad_token_id, "token_type_ids": self.tokenizer.pad_token_type_id}
        features: Features = {}
        for key, rows in encoded.items():
            array = np.full((len(batch), width), pad_values.get(key, 0), dtype=np.int64)  # masks pad with 0
            for row, index in enumerate(batch):
                values = rows[index]
                if left:
                    array[row, width - len(values) :] = values
                else:
                    array[row, : len(values)] = values
            features[key] = array
        return features

    def _run_batch(self, encoded: Encoded, batch: list[int]) -> np.ndarray:
        features = self._features(encoded, batch)
        with self._slots:
            return np.asarray(self._run(features), dtype=np.float32)

    def _embed(self, texts: list[str], batch_size: int) -> np.ndarray:
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return vectors
        if self.solo_texts:
            batch_size = 1
        elif self._pool is not None:
            # Ingestion sends a document's chunks at a time (often under 64): cut them into a few batches
            # per thread so that the threads finish together instead of one waiting on a long last batch.
            batch_size = min(batch_size, max(MIN_PARALLEL_BATCH, -(-len(texts) // (2 * self._parallel))))
        encoded = self._encode(texts)
        batches = length_buckets([len(ids) for ids in encoded["input_ids"]], batch_size)
        run = self._pool.map if self._pool is not None and len(batches) > 1 else map
        for batch, batch_vectors in zip(batches, run(lambda b: self._run_batch(encoded, b), batches)):
            vectors[batch] = batch_vectors
        if self.normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors /= np.where(norms == 0, 1.0, norms)
        return vectors

    def embed_documents(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """(n, dim) float32 in input order, each text with the document prefix."""
        return self._embed([self.document_prefix + text for text in texts], batch_size)

    def embed_query(self, text: str) -> np.ndarray:
        """(dim,) float32, with the query prefix."""
        return self._embed([self.query_prefix + text], 1)[0]
