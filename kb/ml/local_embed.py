"""Local embedders run by sentence-transformers in torch: the `fp32` reference and `bf16` weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kb.errors import ServiceUnavailable
from kb.ml.embedding import BucketedEmbedder, Features
from kb.ml.specs import ModelSpec

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


class SentenceTransformerEmbedder(BucketedEmbedder):
    """One SentenceTransformer run batch by batch; torch's own threads use the cores, so one batch at a time."""

    def __init__(self, spec: ModelSpec, model: object, variant: str):
        # sentence-transformers 6 renamed the dimension getter; older versions only have the first name
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        super().__init__(
            spec, variant=variant, dim=int(dimension()), max_tokens=int(model.max_seq_length), tokenizer=model.tokenizer
        )
        self.model = model

    def _run(self, features: Features) -> np.ndarray:
        with torch.inference_mode():
            output = self.model({key: torch.from_numpy(value) for key, value in features.items()})
        return output["sentence_embedding"].float().numpy()


def load_sentence_transformer(
    spec: ModelSpec,
    folder_or_id: str,
    trust_remote_code: bool,
    *,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = None,
) -> object:
    """A SentenceTransformer on CPU in `dtype`, its window capped at the spec's context length."""
    from sentence_transformers import SentenceTransformer

    model_kwargs: dict[str, object] = {"dtype": dtype}
    if attn_implementation is not None:
        model_kwargs["attn_implementation"] = attn_implementation
    try:
        model = SentenceTransformer(
            folder_or_id, device="cpu", trust_remote_code=trust_remote_code, model_kwargs=model_kwargs
        )
    except (OSError, ValueError) as exc:
        hint = "" if Path(folder_or_id).exists() else " (hub ids must already be in the local Hugging Face cache)"
        raise ServiceUnavailable(
            f"cannot load embedding model '{spec.name}' from {folder_or_id}{hint}: {exc}", code="model_unavailable"
        ) from exc
    model.eval()
    if spec.context_length:
        model.max_seq_length = min(spec.context_length, model.max_seq_length or spec.context_length)
    return model


def load_torch_embedder(
    spec: ModelSpec, folder_or_id: str, trust_remote_code: bool, variant: str
) -> SentenceTransformerEmbedder:
    """The `fp32` or `bf16` variant of a sentence-transformers model."""
    model = load_sentence_transformer(spec, folder_or_id, trust_remote_code, dtype=TORCH_DTYPES[variant])
    return SentenceTransformerEmbedder(spec, model, variant)
