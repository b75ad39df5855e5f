"""ONNX Runtime embedders: a sentence-transformers model exported once to ONNX (fused, optionally int8), cached.

`onnx-fp32` is the model's whole sentence-embedding pipeline (transformer, pooling, dense layers)
exported from torch with eager attention, which ONNX Runtime's BERT optimizer fuses into single
Attention / SkipLayerNorm / BiasGelu kernels (the layer norms are then spelled out again as plain ops,
which run faster here: kb.ml.onnx_graph). `onnx-int8` is that graph with its weight matrices
quantised to int8 per output channel (activations quantised on the fly); per-tensor scales keep
only ~0.95 cosine to fp32 on MiniLM, per-channel ones ~0.994. The build is kb.ml.onnx_export.

Loading a built variant needs ONNX Runtime and the Rust tokenizer only: no torch, transformers or
sentence-transformers import, which took 7 of the 8 s a worker's first job spent loading e5-small.

Each session runs one thread; the embedder runs `threads` batches side by side, which keeps both
cores busy without the barrier stalls intra-op threads suffer on a shared machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from functools import cache
from importlib import metadata
from pathlib import Path

import numpy as np

from kb.ml.embedding import BucketedEmbedder, Features
from kb.ml.loading import build_once
from kb.ml.specs import ModelSpec
from kb.ml.tokens import load_tokenizer

log = logging.getLogger(__name__)

EXPORT_FORMAT = 2  # bump when the recipe in kb.ml.onnx_export changes, so caches built by the old one are not reused
MODEL_FILE = "model.onnx"
MARKER = "embedder.json"
TOKENIZER_DIR = "tokenizer"
# The distributions whose versions shape a build: any of them upgraded, the variant is built again.
BUILD_TOOLS = (
    ("torch",),
    ("transformers",),
    ("sentence-transformers",),
    ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
)


def _fingerprint(source: str) -> list:
    path = Path(source)
    if path.is_file():
        return [path.name, path.stat().st_size, path.stat().st_mtime_ns]
    if path.is_dir():
        return sorted(
            [str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns]
            for f in path.rglob("*")
            if f.is_file() and not f.name.startswith(".")
        )
    return []  # a hub id: its files are in the Hugging Face cache, named by revision


@cache
def _installed_version(distributions: tuple[str, ...]) -> str:
    """The version of the first installed distribution among `distributions`, from its metadata (no import)."""
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "absent"


def onnx_cache_folder(spec: ModelSpec, source: str, variant: str, cache_dir: Path) -> Path:
    """Where one model's ONNX variant is cached; the name changes with the model files, its settings and the tools."""
    key = json.dumps(
        {
            "format": EXPORT_FORMAT,
            "variant": variant,
            "source": source,
            "files": _fingerprint(source),
            "spec": spec.model_dump(mode="json", include={"path", "context_length", "trust_remote_code"}),
            "tools": [_installed_version(names) for names in BUILD_TOOLS],
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / "onnx" / f"{re.sub(r'[^A-Za-z0-9._-]', '_', spec.name)}-{variant}-{digest}"


def onnx_session(model_file: Path, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initializers are noise here
    return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])


def onnx_model_folder(spec: ModelSpec, source: str, trust_remote_code: bool, variant: str, cache_dir: Path) -> Path:
    """The cached ONNX export of this variant, built on first use (int8 is quantised from the cached fp32)."""
    fp32_folder = None
    if variant == "onnx-int8":
        fp32_folder = onnx_model_folder(spec, source, trust_remote_code, "onnx-fp32", cache_dir)
    folder = onnx_cache_folder(spec, source, variant, cache_dir)

    def build(staging: Path) -> None:
        from kb.ml.onnx_export import build_variant

        log.info("building the %s variant of embedding model '%s' once into %s", variant, spec.name, folder)
        build_variant(staging, spec, source, trust_remote_code, variant, fp32_folder)

    return build_once(folder, build, marker=MARKER)


class OnnxEmbedder(BucketedEmbedder):
    """One ONNX Runtime session (one thread per run) shared by `threads` batches at once."""

    def __init__(self, spec: ModelSpec, folder: Path, threads: int):
        meta = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        super().__init__(
            spec,
            variant=meta["variant"],
            dim=meta["dim"],
            max_tokens=meta["max_tokens"],
            tokenizer=load_tokenizer(folder / TOKENIZER_DIR),
            parallel=threads,
        )
        self.folder = folder
        # Dynamic int8 quantises each MatMul's input with one scale per batch tensor (padding included): batched,
        # a text's vector moved with its neighbours (cosine down to 0.996 between embedding the SQuAD kit in one
        # call and per document, vector hit@1 0.635 against 0.653). Alone it is a function of the text, and no slower.
        self.solo_texts = meta["variant"] == "onnx-int8"
        self.input_names = meta["inputs"]
        self.session = onnx_session(folder / MODEL_FILE)

    def _run(self, features: Features) -> np.ndarray:
        return self.session.run(None, {name: features[name] for name in self.input_names})[0]


def load_onnx_embedder(
    spec: ModelSpec, source: str, trust_remote_code: bool, variant: str, cache_dir: Path, threads: int
) -> OnnxEmbedder:
    """The `onnx-fp32` or `onnx-int8` variant, exported and cached under `cache_dir` on first use."""
    return OnnxEmbedder(spec, onnx_model_folder(spec, source, trust_remote_code, variant, cache_dir), threads)
