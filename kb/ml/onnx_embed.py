"""ONNX Runtime embedders: a sentence-transformers model exported once to ONNX (fused, optionally int8), cached.

`onnx-fp32` is the model's whole sentence-embedding pipeline (transformer, pooling, dense layers)
exported from torch with eager attention, which ONNX Runtime's BERT optimizer fuses into single
Attention / SkipLayerNorm / BiasGelu kernels (the layer norms are then spelled out again as plain ops,
which run faster here: kb.ml.onnx_graph). `onnx-int8` is that graph with its weight matrices
quantised to int8 per output channel (activations quantised on the fly); per-tensor scales keep
only ~0.95 cosine to fp32 on MiniLM, per-channel ones ~0.994.

Each session runs one thread; the embedder runs `threads` batches side by side, which keeps both
cores busy without the barrier stalls intra-op threads suffer on a shared machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from kb.errors import ServiceUnavailable
from kb.ml.embedding import BucketedEmbedder, Features
from kb.ml.loading import build_once
from kb.ml.local_embed import load_sentence_transformer
from kb.ml.onnx_graph import unfuse_skip_layer_norms
from kb.ml.specs import ModelSpec

log = logging.getLogger(__name__)

EXPORT_FORMAT = 2  # bump when the recipe below changes, so caches built by the old one are not reused
MODEL_FILE = "model.onnx"
MARKER = "embedder.json"
FUSABLE = ("bert",)  # model types whose attention pattern ONNX Runtime's optimizer knows
# Smallest cosine to the torch model on the probe sentences for a build to be kept (catches a broken export).
MIN_PROBE_COSINE = {"onnx-fp32": 0.999, "onnx-int8": 0.95}
PROBE = [
    "kb exports the embedding model once and reuses the file.",
    "A second, longer sentence makes the batch pad the first one, which the export must handle correctly.",
]


class _SentenceEmbedding(torch.nn.Module):
    """The sentence-transformers pipeline as a module of plain tensors, as the ONNX exporter wants."""

    def __init__(self, model: torch.nn.Module, input_names: list[str]):
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(dict(zip(self.input_names, inputs, strict=True)))["sentence_embedding"]


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


def onnx_cache_folder(spec: ModelSpec, source: str, variant: str, cache_dir: Path) -> Path:
    """Where one model's ONNX variant is cached; the name changes with the model files, its settings and the tools."""
    import onnxruntime
    import sentence_transformers
    import transformers

    key = json.dumps(
        {
            "format": EXPORT_FORMAT,
            "variant": variant,
            "source": source,
            "files": _fingerprint(source),
            "spec": spec.model_dump(mode="json", include={"path", "context_length", "trust_remote_code"}),
            "tools": [
                torch.__version__,
                transformers.__version__,
                sentence_transformers.__version__,
                onnxruntime.__version__,
            ],
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / "onnx" / f"{re.sub(r'[^A-Za-z0-9._-]', '_', spec.name)}-{variant}-{digest}"


def _session(model_file: Path, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initializers are noise here
    return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])


def _fuse(raw: Path, target: Path, config) -> None:
    if config.model_type not in FUSABLE:
        shutil.copyfile(raw, target)  # ONNX Runtime's generic graph optimisations still apply at load time
        return
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        str(raw), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size, opt_level=0
    )
    unfuse_skip_layer_norms(optimized.model)  # same maths on faster kernels; see kb.ml.onnx_graph
    optimized.save_model_to_file(str(target))


def _check(staging: Path, variant: str, reference: np.ndarray, tokenizer, input_names: list[str]) -> None:
    encoded = tokenizer(PROBE, padding=True, return_tensors="np")
    vectors = _session(staging / MODEL_FILE).run(None, {n: encoded[n].astype(np.int64) for n in input_names})[0]
    cosine = (vectors * reference).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(reference, axis=1)
    if cosine.min() < MIN_PROBE_COSINE[variant]:
        raise ServiceUnavailable(
            f"the {variant} export of this embedding model disagrees with the original (cosine {cosine.min():.3f}); "
            "use the fp32 variant for it",
            code="model_unavailable",
        )


def _build(
    staging: Path, spec: ModelSpec, source: str, trust_remote_code: bool, variant: str, fp32_folder: Path | None
) -> None:
    # Eager attention traces to plain MatMul/Softmax, the pattern the optimizer fuses; SDPA does not.
    model = load_sentence_transformer(spec, source, trust_remote_code, attn_implementation="eager")
    tokenizer = model.tokenizer
    sample = tokenizer(PROBE, padding=True, return_tensors="pt")
    input_names = list(sample.keys())
    with torch.inference_mode():
        reference = model(dict(sample))["sentence_embedding"].numpy()
    if fp32_folder is None:
        raw = staging / "raw.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(
                _SentenceEmbedding(model, input_names),
                tuple(sample[n] for n in input_names),
                str(raw),
                input_names=input_names,
                output_names=["embedding"],
                opset_version=17,
                dynamo=False,
                dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in input_names}, "embedding": {0: "batch"}},
            )
        _fuse(raw, staging / MODEL_FILE, model[0].auto_model.config)
        raw.unlink()
    else:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(
            fp32_folder / MODEL_FILE,
            staging / MODEL_FILE,
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # fused ops have no inferred output types
        )
    _check(staging, variant, reference, tokenizer, input_names)
    tokenizer.save_pretrained(staging / "tokenizer")
    meta = {
        "variant": variant,
        "dim": int(reference.shape[1]),
        "max_tokens": int(model.max_seq_length),
        "inputs": input_names,
    }
    (staging / MARKER).write_text(json.dumps(meta, indent=1), encoding="utf-8")


def onnx_model_folder(spec: ModelSpec, source: str, trust_remote_code: bool, variant: str, cache_dir: Path) -> Path:
    """The cached ONNX export of this variant, built on first use (int8 is quantised from the cached fp32)."""
    fp32_folder = None
    if variant == "onnx-int8":
        fp32_folder = onnx_model_folder(spec, source, trust_remote_code, "onnx-fp32", cache_dir)
    folder = onnx_cache_folder(spec, source, variant, cache_dir)

    def build(staging: Path) -> None:
        log.info("building the %s variant of embedding model '%s' once into %s", variant, spec.name, folder)
        _build(staging, spec, source, trust_remote_code, variant, fp32_folder)

    return build_once(folder, build, marker=MARKER)


class OnnxEmbedder(BucketedEmbedder):
    """One ONNX Runtime session (one thread per run) shared by `threads` batches at once."""

    def __init__(self, spec: ModelSpec, folder: Path, threads: int):
        from transformers import AutoTokenizer

        meta = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        super().__init__(
            spec,
            variant=meta["variant"],
            dim=meta["dim"],
            max_tokens=meta["max_tokens"],
            tokenizer=AutoTokenizer.from_pretrained(folder / "tokenizer"),
            parallel=threads,
        )
        self.folder = folder
        # Dynamic int8 quantises each MatMul's input with one scale per batch tensor (padding included): batched,
        # a text's vector moved with its neighbours (cosine down to 0.996 between embedding the SQuAD kit in one
        # call and per document, vector hit@1 0.635 against 0.653). Alone it is a function of the text, and no slower.
        self.solo_texts = meta["variant"] == "onnx-int8"
        self.input_names = meta["inputs"]
        self.session = _session(folder / MODEL_FILE)

    def _run(self, features: Features) -> np.ndarray:
        return self.session.run(None, {name: features[name] for name in self.input_names})[0]


def load_onnx_embedder(
    spec: ModelSpec, source: str, trust_remote_code: bool, variant: str, cache_dir: Path, threads: int
) -> OnnxEmbedder:
    """The `onnx-fp32` or `onnx-int8` variant, exported and cached under `cache_dir` on first use."""
    return OnnxEmbedder(spec, onnx_model_folder(spec, source, trust_remote_code, variant, cache_dir), threads)
