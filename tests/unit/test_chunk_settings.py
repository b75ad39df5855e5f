"""A dataset's chunk size: the embedder's own unless the user sets one, never past what the embedder reads."""

from __future__ import annotations

from kb.services.datasets import default_chunk_tokens, fit_chunk_settings
from kb.testing import HashEmbedder


def test_a_dataset_without_a_chunk_size_gets_the_embedders_own():
    e5_like = HashEmbedder(max_tokens=512, chunk_tokens=384)
    assert fit_chunk_settings({}, e5_like)["max_tokens"] == 384


def test_an_embedder_without_a_preferred_size_chunks_at_its_whole_window():
    whole_window = HashEmbedder(max_tokens=256, chunk_tokens=None)
    assert default_chunk_tokens(whole_window) == 254, "[CLS] and [SEP] take two of the 256"
    assert fit_chunk_settings({"max_tokens": None}, whole_window)["max_tokens"] == 254


def test_a_chosen_chunk_size_is_kept_and_capped_at_the_window():
    embedder = HashEmbedder(max_tokens=512, chunk_tokens=384)
    assert fit_chunk_settings({"max_tokens": 100}, embedder)["max_tokens"] == 100
    assert fit_chunk_settings({"max_tokens": 2000}, embedder)["max_tokens"] == 510
    assert default_chunk_tokens(HashEmbedder(max_tokens=128, chunk_tokens=384)) == 126
