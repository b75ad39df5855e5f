"""Building an embedder's ONNX variants: torch export, ONNX Runtime's BERT fusion, int8 quantisation, a probe check.

Runs once per model, variant and tool versions (kb.ml.onnx_embed decides when); it is the only part
of the ONNX path that needs torch and sentence-transformers, so loading an already built variant
imports neither.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from kb.errors import ServiceUnavailable
from kb.ml.local_embed import load_sentence_transformer
from kb.ml.onnx_embed import MARKER, MODEL_FILE, TOKENIZER_DIR, onnx_session
from kb.ml.onnx_graph import unfuse_skip_layer_norms
from kb.ml.specs import ModelSpec
from kb.ml.tokens import write_plain_tokenizer

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
    vectors = onnx_session(staging / MODEL_FILE).run(None, {n: encoded[n].astype(np.int64) for n in input_names})[0]
    cosine = (vectors * reference).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(reference, axis=1)
    if cosine.min() < MIN_PROBE_COSINE[variant]:
        raise ServiceUnavailable(
            f"the {variant} export of this embedding model disagrees with the original (cosine {cosine.min():.3f}); "
            "use the fp32 variant for it",
            code="model_unavailable",
        )


def build_variant(
    staging: Path, spec: ModelSpec, source: str, trust_remote_code: bool, variant: str, fp32_folder: Path | None
) -> None:
    """Write one variant's model, tokenizer and marker into `staging` (kb.ml.loading.build_once renames it)."""
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
    tokenizer.save_pretrained(staging / TOKENIZER_DIR)
    write_plain_tokenizer(tokenizer, staging / TOKENIZER_DIR)
    meta = {
        "variant": variant,
        "dim": int(reference.shape[1]),
        "max_tokens": int(model.max_seq_length),
        "inputs": input_names,
    }
    (staging / MARKER).write_text(json.dumps(meta, indent=1), encoding="utf-8")
