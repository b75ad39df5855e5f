"""kb's model layer: chat models and embedders, local or remote, behind one registry."""

from kb.ml.registry import ModelRegistry, UnknownModel, get_registry
from kb.ml.specs import ModelSpec, ProviderSpec
from kb.ml.types import (
    ChatModel,
    Completion,
    Embedder,
    GenerationCancelled,
    GenerationParams,
    StreamDelta,
)

__all__ = [
    "ChatModel",
    "Completion",
    "Embedder",
    "GenerationCancelled",
    "GenerationParams",
    "ModelRegistry",
    "ModelSpec",
    "ProviderSpec",
    "StreamDelta",
    "UnknownModel",
    "get_registry",
]
