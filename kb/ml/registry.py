"""The one place models are found and loaded: lazily, once per process, bundled defaults and user models alike."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from kb.config import Settings
from kb.errors import BadRequest, ServiceUnavailable
from kb.ml.specs import ModelSpec, load_specs
from kb.ml.types import ChatModel, Embedder

log = logging.getLogger(__name__)

_loaded: dict[tuple, object] = {}
_failed: dict[tuple, str] = {}  # why the last load of a model failed (it is tried again on its next use)
_loading_locks: dict[tuple, threading.Lock] = {}
_guard = threading.Lock()
_registries: dict[tuple, ModelRegistry] = {}


class UnknownModel(BadRequest):
    code = "model_not_found"


def _load_chat(spec: ModelSpec, settings: Settings) -> ChatModel:
    if spec.backend == "remote":
        from kb.ml.remote import RemoteChatModel

        return RemoteChatModel(spec)
    from kb.ml.loading import dequantised_gguf, gguf_weight_bits, remote_code_allowed, resolve_source, use_torch_threads

    source = resolve_source(spec, settings.shared_models_dir)
    if source.endswith(".gguf") and spec.engine != "transformers":  # llama.cpp is the engine for GGUF files
        from kb.ml.llamacpp import load_llama_cpp_chat

        return load_llama_cpp_chat(spec, Path(source), settings)
    from kb.ml.local_chat import load_transformers_chat

    use_torch_threads(settings.torch_threads)
    weight_bits = None
    if source.endswith(".gguf"):
        gguf_file = Path(source)
        source = str(dequantised_gguf(gguf_file, settings.model_cache_dir))
        weight_bits = gguf_weight_bits(gguf_file, Path(source))
    return load_transformers_chat(spec, source, remote_code_allowed(spec, settings.allow_remote_code), weight_bits)


def _load_embedder(spec: ModelSpec, settings: Settings, variant: str) -> Embedder:
    if spec.backend == "remote":
        from kb.ml.remote import RemoteEmbedder

        return RemoteEmbedder(spec)
    from kb.ml.e5pack import is_pack
    from kb.ml.loading import dequantised_pack, remote_code_allowed, resolve_source, use_torch_threads

    source, trust = (
        resolve_source(spec, settings.shared_models_dir),
        remote_code_allowed(spec, settings.allow_remote_code),
    )
    if is_pack(Path(source)):
        source = str(dequantised_pack(Path(source), settings.model_cache_dir, spec.sha256))
    if variant.startswith("onnx-"):
        from kb.ml.onnx_embed import load_onnx_embedder

        return load_onnx_embedder(spec, source, trust, variant, settings.model_cache_dir, settings.torch_threads)
    from kb.ml.local_embed import load_torch_embedder

    use_torch_threads(settings.torch_threads)
    return load_torch_embedder(spec, source, trust, variant)


class UnknownVariant(BadRequest):
    code = "embed_variant_not_found"


class ModelRegistry:
    """Looks models up by name and hands out the process-wide loaded instance."""

    def __init__(self, settings: Settings):
        self.settings = settings
        try:
            specs = load_specs(settings.models_file)
        except ValueError as exc:
            raise ServiceUnavailable(str(exc), code="model_config_invalid") from exc
        self._chat = {s.name: s for s in specs if s.kind == "chat"}
        self._embedding = {s.name: s for s in specs if s.kind == "embedding"}
        self._ready_chat: dict[str, ChatModel] = {}
        self._ready_embedders: dict[str, dict[str, Embedder]] = {}
        self._file_problems: dict[str, str] = {}

    def register_chat(self, model: ChatModel) -> None:
        """Serve a ready chat model instance under its own name (tests register fakes this way)."""
        self._ready_chat[model.name] = model

    def register_embedder(self, embedder: Embedder, name: str | None = None) -> None:
        """Serve a ready embedder under `name` (default: its own) as its variant; the first registered is the default."""
        self._ready_embedders.setdefault(name or embedder.name, {})[embedder.variant] = embedder

    def chat_names(self) -> list[str]:
        """Names of every chat model this registry can serve, configured or registered."""
        return sorted({*self._chat, *self._ready_chat})

    def embedding_names(self) -> list[str]:
        """Names of every embedding model this registry can serve, configured or registered."""
        return sorted({*self._embedding, *self._ready_embedders})

    def registered(self, kind: str) -> list[str]:
        """Names of the ready instances registered for `kind` ("chat" or "embedding"); they shadow configured ones."""
        return sorted(self._ready_chat if kind == "chat" else self._ready_embedders)

    def chat_specs(self) -> list[ModelSpec]:
        """Every configured chat model."""
        return list(self._chat.values())

    def embedding_specs(self) -> list[ModelSpec]:
        """Every configured embedding model."""
        return list(self._embedding.values())

    def chat_spec(self, name: str | None = None) -> ModelSpec | None:
        """The configuration of a chat model by name (default: settings.chat_model); None for a registered instance."""
        name = name or self.settings.chat_model
        return None if name in self._ready_chat else self._find(self._chat, name, "chat", self.chat_names())

    def chat(self, name: str | None = None) -> ChatModel:
        """The chat model by name (default: settings.chat_model), loaded on first use."""
        name = name or self.settings.chat_model
        if name in self._ready_chat:
            return self._ready_chat[name]
        spec = self._find(self._chat, name, "chat", self.chat_names())
        return self._instance(spec, _load_chat)

    def embedder(self, name: str | None = None, variant: str | None = None) -> Embedder:
        """The embedder by name (default: settings.embed_model) in `variant` (default: the model's), loaded on first use.

        Vectors of different variants of one model are close but not interchangeable: a dataset asks for
        the variant that made its vectors.
        """
        name = name or self.settings.embed_model
        ready = self._ready_embedders.get(name)
        if ready:
            if variant is None:
                return next(iter(ready.values()))
            if variant not in ready:
                raise UnknownVariant(
                    f"embedding model '{name}' has no variant '{variant}' here; it has: {', '.join(ready)}"
                )
            return ready[variant]
        spec = self._find(self._embedding, name, "embedding", self.embedding_names())
        variant = variant or spec.default_variant()
        if variant not in spec.embed_variants():
            raise UnknownVariant(
                f"embedding model '{name}' has no variant '{variant}'; it has: {', '.join(spec.embed_variants())}"
            )
        return self._instance(spec, lambda s, settings: _load_embedder(s, settings, variant), variant)

    def prepare_chat_file(self, name: str | None = None) -> None:
        """Make a catalog chat model's file ready (assembled and verified once per machine), remembering a failure.

        Run in the background at server start: the server serves while the file is built, and a model
        that cannot be made ready is reported (healthz, admin Models page) instead of stopping the server.
        """
        spec = self._chat.get(name or self.settings.chat_model)
        if spec is None or spec.catalog is None:
            return
        from kb.ml.loading import resolve_source

        try:
            resolve_source(spec, self.settings.shared_models_dir)
            self._file_problems.pop(spec.name, None)
        except ServiceUnavailable as exc:
            log.error("chat model '%s' is unavailable: %s", spec.name, exc.message)
            self._file_problems[spec.name] = exc.message

    def file_problem(self, name: str) -> str | None:
        """Why a model's file could not be made ready the last time it was tried, if it failed."""
        return self._file_problems.get(name)

    def chat_status(self, name: str | None = None) -> dict[str, str]:
        """Whether the chat model (default: settings.chat_model) is ready, not loaded yet, or unavailable and why."""
        name = name or self.settings.chat_model
        spec = self._chat.get(name)
        if name in self._ready_chat or (spec is not None and self._key(spec) in _loaded):
            return {"name": name, "state": "ready"}
        if spec is None:
            return {"name": name, "state": "unavailable", "message": f"no chat model '{name}' is configured"}
        if self._key(spec) in _failed:
            return {"name": name, "state": "unavailable", "message": _failed[self._key(spec)]}
        return {"name": name, "state": "not loaded"}

    def embedding_facts(self, name: str) -> tuple[list[str], int | None, str | None]:
        """(languages, dimensions, licence) of an embedding model as configured, without loading it."""
        ready = self._ready_embedders.get(name)
        if ready:
            return [], next(iter(ready.values())).dim, None
        spec = self._find(self._embedding, name, "embedding", self.embedding_names())
        return list(spec.languages), spec.dim, spec.licence

    def check_embedder(self, name: str, variant: str | None = None) -> None:
        """Raise what loading `embedder(name, variant)` would surely raise (unknown name or variant, missing files)."""
        self.embedding_variant(name, variant)
        spec = self._embedding.get(name)
        if name not in self._ready_embedders and spec is not None and spec.backend == "local":
            from kb.ml.loading import resolve_source

            resolve_source(spec)

    def embedding_variant(self, name: str, variant: str | None = None) -> str:
        """The variant `embedder(name, variant)` would load, checked without loading anything (400 if unknown)."""
        ready = self._ready_embedders.get(name)
        if ready:
            choices, default = tuple(ready), next(iter(ready))
        else:
            spec = self._find(self._embedding, name, "embedding", self.embedding_names())
            choices, default = spec.embed_variants(), spec.default_variant()
        if variant is not None and variant not in choices:
            raise UnknownVariant(f"embedding model '{name}' has no variant '{variant}'; it has: {', '.join(choices)}")
        return variant or default

    def loaded(self) -> list[str]:
        """Names of this registry's models already loaded in this process (an embedder in any variant)."""
        prefixes = {self._key(s)[:-1]: s.name for s in (*self._chat.values(), *self._embedding.values())}
        return sorted({prefixes[key[:-1]] for key in _loaded if key[:-1] in prefixes})

    def _find(self, specs: dict[str, ModelSpec], name: str, kind: str, known: list[str]) -> ModelSpec:
        if name not in specs:
            raise UnknownModel(f"unknown {kind} model '{name}'; configured: {', '.join(known) or 'none'}")
        return specs[name]

    def _key(self, spec: ModelSpec, variant: str | None = None) -> tuple:
        settings = self.settings
        return (
            spec.model_dump_json(),
            settings.allow_remote_code,
            str(settings.model_cache_dir),
            settings.torch_threads,
            variant,
        )

    def _instance(self, spec: ModelSpec, load: object, variant: str | None = None) -> object:
        key = self._key(spec, variant)
        if key in _loaded:
            return _loaded[key]
        with _guard:
            lock = _loading_locks.setdefault(key, threading.Lock())
        with lock:  # two first requests at once load the model once
            if key not in _loaded:
                log.info("loading %s model '%s'%s", spec.kind, spec.name, f" ({variant})" if variant else "")
                try:
                    _loaded[key] = load(spec, self.settings)
                except ServiceUnavailable as exc:
                    _failed[key] = exc.message
                    raise
                _failed.pop(key, None)
        return _loaded[key]


def get_registry(settings: Settings) -> ModelRegistry:
    """The process's registry for these settings (models themselves are shared process-wide)."""
    key = (
        str(settings.models_file),
        settings.chat_model,
        settings.embed_model,
        settings.allow_remote_code,
        str(settings.model_cache_dir),
        settings.torch_threads,
    )
    with _guard:
        if key not in _registries:
            _registries[key] = ModelRegistry(settings)
        return _registries[key]
