"""What the models page shows: every model the registry can serve, whether it is loaded, and a quick trial."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kb.errors import BadRequest, KBError
from kb.ml.catalog import file_state, load_catalog
from kb.ml.registry import ModelRegistry
from kb.ml.specs import ModelSpec
from kb.ml.types import GenerationParams

log = logging.getLogger(__name__)

ModelKind = Literal["chat", "embedding"]
MODEL_KINDS: tuple[ModelKind, ...] = ("chat", "embedding")
CHAT_TRIAL_PROMPT = "Say hello in one short sentence."
CHAT_TRIAL_TOKENS = 24
EMBED_TRIAL_TEXT = "A knowledge base answers questions from its documents."
IN_PROCESS = "in-process"  # an instance registered by code (tests, benchmarks), not read from the models file


@dataclass(frozen=True)
class ModelStatus:
    """One model as configured: where it comes from and whether this process has it loaded."""

    name: str
    kind: ModelKind
    backend: str  # "local", "remote" or IN_PROCESS
    source: str  # the local path, or the remote providers in the order they are tried
    is_default: bool
    loaded: bool
    languages: tuple[str, ...] = ()  # embedding models: what they read well
    dim: int | None = None
    licence: str | None = None
    file: ModelFile | None = None  # catalog models: licence, size, context and whether the file is ready


@dataclass(frozen=True)
class ModelFile:
    """A catalog model's file: what it is and whether it is installed (verified) on this machine."""

    licence: str
    size: int
    context_length: int
    languages: tuple[str, ...]
    state: str  # "cached", "user-path" (both installed and verified), "parts" (assembled on first use), "missing"
    detail: str

    @property
    def installed(self) -> bool:
        return self.state in ("cached", "user-path")

    @property
    def available(self) -> bool:
        return self.state != "missing"


@dataclass(frozen=True)
class ModelTrial:
    """The outcome of trying one model: a generated line, or an embedding's dimension; or why it failed."""

    name: str
    kind: ModelKind
    ok: bool
    seconds: float
    output: str = ""
    dim: int | None = None
    error: str | None = None


def _source(spec: ModelSpec) -> str:
    if spec.backend == "remote":
        return ", ".join(provider.label for provider in spec.sorted_providers())
    return spec.path or ""


def model_file(registry: ModelRegistry, spec: ModelSpec) -> ModelFile | None:
    """The catalog file behind `spec` and its state (sizes only, no hashing); None for other models."""
    if spec.catalog is None:
        return None
    entry = load_catalog()[spec.catalog]
    user_path = Path(spec.path).expanduser() if spec.path else None
    state = file_state(entry, registry.settings.shared_models_dir, user_path)
    problem = registry.file_problem(spec.name)
    kind, detail = ("missing", problem) if problem and not state.installed else (state.state, state.detail)
    return ModelFile(entry.licence, entry.size, entry.context_length, tuple(entry.languages), kind, detail)


@dataclass(frozen=True)
class ChatHealth:
    """Whether the default chat model can answer, for /healthz: never a reason to refuse to start."""

    name: str
    available: bool
    detail: str


def default_chat_health(registry: ModelRegistry) -> ChatHealth:
    """The default chat model's availability: a catalog file missing or bad, a local file gone, or fine."""
    name = registry.settings.chat_model
    try:
        spec = registry.chat_spec(name)
    except KBError as exc:
        return ChatHealth(name, False, exc.message)
    if spec is None or spec.backend == "remote":
        return ChatHealth(name, True, "in-process instance" if spec is None else "remote providers")
    file = model_file(registry, spec)
    if file is not None:
        return ChatHealth(name, file.available, file.detail)
    problem = registry.file_problem(name)
    return ChatHealth(name, problem is None, problem or "configured")


def describe_models(registry: ModelRegistry) -> list[ModelStatus]:
    """Chat models, then embedding models, each by name, with backend, source, default and loaded flags."""
    loaded = set(registry.loaded())
    defaults = {"chat": registry.settings.chat_model, "embedding": registry.settings.embed_model}
    statuses = []
    for kind in MODEL_KINDS:
        chat = kind == "chat"
        specs = {spec.name: spec for spec in (registry.chat_specs() if chat else registry.embedding_specs())}
        ready = set(registry.registered(kind))
        for name in registry.chat_names() if chat else registry.embedding_names():
            spec = None if name in ready else specs[name]
            languages, dim, licence = registry.embedding_facts(name) if not chat else ([], None, None)
            statuses.append(
                ModelStatus(
                    name=name,
                    kind=kind,
                    backend=spec.backend if spec else IN_PROCESS,
                    source=_source(spec) if spec else "",
                    is_default=name == defaults[kind],
                    loaded=spec is None or name in loaded,
                    file=model_file(registry, spec) if spec else None,
                    languages=tuple(languages),
                    dim=dim,
                    licence=licence,
                )
            )
    return statuses


def _run_trial(registry: ModelRegistry, kind: ModelKind, name: str) -> ModelTrial:
    started = time.perf_counter()
    if kind == "chat":
        completion = registry.chat(name).generate(
            [{"role": "user", "content": CHAT_TRIAL_PROMPT}],
            GenerationParams(max_tokens=CHAT_TRIAL_TOKENS, temperature=0.0),
        )
        return ModelTrial(name, kind, True, time.perf_counter() - started, output=completion.text.strip())
    vector = registry.embedder(name).embed_query(EMBED_TRIAL_TEXT)
    return ModelTrial(
        name, kind, True, time.perf_counter() - started, output=EMBED_TRIAL_TEXT, dim=int(vector.shape[-1])
    )


def try_model(registry: ModelRegistry, kind: str, name: str) -> ModelTrial:
    """Load the model if needed and run it once: a one-line generation, or the embedding of a sentence.

    A model that fails is reported with its reason instead of raising: the page shows it next to the model.
    """
    if kind not in MODEL_KINDS:
        raise BadRequest(f"kind must be 'chat' or 'embedding', not '{kind[:40]}'", code="invalid_kind")
    known = registry.chat_names() if kind == "chat" else registry.embedding_names()
    if name not in known:
        raise BadRequest(f"unknown {kind} model '{name[:100]}'; configured: {', '.join(known)}", code="model_not_found")
    started = time.perf_counter()
    try:
        return _run_trial(registry, kind, name)
    except KBError as exc:
        return ModelTrial(name, kind, False, time.perf_counter() - started, error=exc.message)
    except Exception as exc:  # a model that cannot load or run: the admin needs the reason, not a 500 page
        log.exception("trying %s model '%s' failed", kind, name)
        return ModelTrial(name, kind, False, time.perf_counter() - started, error=f"{type(exc).__name__}: {exc}")
