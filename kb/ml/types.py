"""The shapes every chat model and embedder in kb speaks, local or remote."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from kb.errors import BadRequest, KBError

FINISH_REASONS = ("stop", "length", "tool_calls")


class GenerationCancelled(KBError):
    """The caller set the cancel event (e.g. its client went away); no answer is reported."""

    status_code = 499
    code = "cancelled"


@dataclass
class GenerationParams:
    """Sampling settings of one request; temperature 0 means greedy decoding."""

    max_tokens: int | None = None
    temperature: float = 0.7
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    tools: list[dict] | None = None
    # Added to the logits of every token of `copy_from` (and of citation marks and the end of the turn), so the
    # answer keeps the quotes' own words. Engines that cannot bias logits (kb's decoder, remote APIs) ignore it.
    copy_from: str = ""
    copy_bias: float = 0.0


@dataclass
class StreamDelta:
    """A piece of the answer; never holds a stop string or the start of one that later completes."""

    text: str


@dataclass
class Completion:
    """The whole answer with real token counts; the last item of every stream."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    tool_calls: list[dict] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@runtime_checkable
class ChatModel(Protocol):
    name: str
    context_length: int
    supports_tools: bool

    def count_tokens(self, text: str) -> int: ...

    def count_prompt_tokens(self, messages: list[dict], tools: list[dict] | None = None) -> int: ...

    def stream(
        self, messages: list[dict], params: GenerationParams, cancel: threading.Event | None = None
    ) -> Iterator[StreamDelta | Completion]: ...

    def generate(
        self, messages: list[dict], params: GenerationParams, cancel: threading.Event | None = None
    ) -> Completion: ...


@runtime_checkable
class Embedder(Protocol):
    name: str
    dim: int
    max_tokens: int
    variant: str
    chunk_tokens: int | None  # the default chunk size of new datasets; None: the whole window
    hybrid_weight: float | None  # the vector score's share in hybrid search; None: kb's default

    def embed_documents(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...


def final_completion(items: Iterator[StreamDelta | Completion]) -> Completion:
    """Drain a stream and return its closing Completion (how `generate` is built from `stream`)."""
    for item in items:
        if isinstance(item, Completion):
            return item
    raise RuntimeError("a chat stream ended without its Completion")


def check_params(params: GenerationParams) -> None:
    """Reject sampling settings a user could not have meant."""
    if params.temperature < 0:
        raise BadRequest(f"temperature must be >= 0, not {params.temperature}")
    if not 0 < params.top_p <= 1:
        raise BadRequest(f"top_p must be in (0, 1], not {params.top_p}")
    if params.max_tokens is not None and params.max_tokens < 1:
        raise BadRequest(f"max_tokens must be at least 1, not {params.max_tokens}")


def room_for_answer(model: str, context_length: int, prompt_tokens: int, max_tokens: int | None) -> int:
    """Tokens left for the answer after the prompt (at most max_tokens); a prompt that fills the context is a 400."""
    room = context_length - prompt_tokens
    if room < 1:
        raise BadRequest(
            f"the prompt is {prompt_tokens} tokens but model '{model}' has a context of {context_length} "
            f"tokens, leaving no room for an answer; shorten the conversation or the quotes",
            code="context_length_exceeded",
        )
    return room if max_tokens is None else min(room, max_tokens)
