"""The OpenAI-compatible gateway's use cases: plain chat with a configured model, app chat, embeddings."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from kb.errors import BadRequest
from kb.ml.types import Completion, GenerationParams, StreamDelta
from kb.principal import Principal
from kb.runtime import Runtime
from kb.services.threaded_stream import ThreadedStream

APP_MODEL_PREFIX = "app:"
MAX_CHAT_MESSAGES = 200  # history included
MAX_EMBEDDING_INPUTS = 2048
EMBEDDING_INPUT_TYPES = ("document", "query")

StreamItem = StreamDelta | Completion


@dataclass
class ChatRequest:
    """One `/v1/chat/completions` request, free of HTTP: the messages as dicts, sampling settings checked."""

    model: str
    messages: list[dict[str, Any]]
    params: GenerationParams
    stream: bool = False  # streamed to the client as it is written (else the whole answer at once)
    extra: dict[str, Any] = field(default_factory=dict)  # fields kb's plain path ignores (chatId, detail, ...)
    chosen: frozenset[str] = frozenset()  # sampling fields the caller set; an app's own settings fill the others


@dataclass
class ChatJob:
    """A chat request routed to whatever will answer it, not yet started.

    `produce(cancel)` runs in a worker thread and yields StreamDelta pieces then one Completion;
    it raises KBError for input the answerer refuses (before any piece when it can). `extras` are
    merged into the final response (the whole body, or the last stream chunk) once the Completion
    has been yielded, e.g. the quotes an app answer used.
    """

    model: str
    produce: Callable[[threading.Event], Iterator[StreamItem]]
    extras: dict[str, Any] = field(default_factory=dict)
    max_completion_tokens: int = 512  # the most the answer may take: reserved against a key's quota beforehand


class AppChat(Protocol):
    """The seam where answering from an app's knowledge bases plugs in (set as `app.state.app_chat`).

    Called (in a worker thread) when the key is app-scoped or `model` is `app:<name>`; `app_name` is
    the part after `app:`, or None when the model names no app (use the key's app). It must call
    `principal.require_app(app_id)` once it knows the app, and raise NotFound/BadRequest for an
    unknown app.
    """

    def __call__(self, rt: Runtime, principal: Principal, app_name: str | None, request: ChatRequest) -> ChatJob: ...


def prepare_chat(rt: Runtime, principal: Principal, request: ChatRequest, app_chat: AppChat | None) -> ChatJob:
    """Route a chat request to an app (app key or `app:<name>`) or straight to a configured chat model."""
    if not request.messages:
        raise BadRequest("messages must not be empty; send at least one message", code="empty_messages")
    check_messages(request.messages, rt.settings.max_message_chars)
    if principal.app_id is not None or request.model.startswith(APP_MODEL_PREFIX):
        return _prepare_app_chat(rt, principal, request, app_chat)
    model = rt.registry.chat(request.model)

    def produce(cancel: threading.Event) -> Iterator[StreamItem]:
        if request.stream:
            return model.stream(request.messages, request.params, cancel)
        # Nothing reaches the client before the end: a remote model may take the whole answer from another provider.
        return iter([model.generate(request.messages, request.params, cancel)])

    return ChatJob(
        model=model.name, produce=produce, max_completion_tokens=request.params.max_tokens or model.context_length
    )


def _message_chars(message: dict[str, Any]) -> int:
    content = message.get("content")
    if isinstance(content, str):
        return len(content)
    parts = content if isinstance(content, list) else []
    return sum(len(part["text"]) if isinstance(part.get("text"), str) else len(str(part)) for part in parts)


def check_messages(messages: list[dict[str, Any]], max_chars: int) -> None:
    """One limit on every message a caller sends, checked before any model reads them."""
    if len(messages) > MAX_CHAT_MESSAGES:
        raise BadRequest(
            f"messages has {len(messages)} entries; the limit is {MAX_CHAT_MESSAGES} (history included): "
            "send only the recent turns, or keep the history on the server with chatId",
            code="too_many_messages",
        )
    for index, message in enumerate(messages):
        chars = _message_chars(message)
        if chars > max_chars:
            raise BadRequest(
                f"messages[{index}] is {chars} characters; the limit is {max_chars} (KB_MAX_MESSAGE_CHARS)",
                code="message_too_long",
            )


def _prepare_app_chat(rt: Runtime, principal: Principal, request: ChatRequest, app_chat: AppChat | None) -> ChatJob:
    app_name = request.model[len(APP_MODEL_PREFIX) :] if request.model.startswith(APP_MODEL_PREFIX) else None
    if app_chat is None:
        raise BadRequest(
            "answering from apps is not available in this kb build; use a configured model name", code="model_not_found"
        )
    return app_chat(rt, principal, app_name, request)


def start_chat(job: ChatJob) -> ThreadedStream[StreamItem]:
    """Start generating in a worker thread (the model itself queues requests that must wait)."""
    return ThreadedStream(job.produce)


async def collect_completion(
    stream: ThreadedStream[StreamItem], is_disconnected: Callable[[], Awaitable[bool]] | None = None
) -> Completion:
    """Read a started chat to its end and return the Completion (a client that leaves cancels it)."""
    try:
        while True:
            item = await stream.next(is_disconnected)
            if isinstance(item, Completion):
                return item
    finally:
        stream.close()


@dataclass(frozen=True)
class Embeddings:
    model: str
    vectors: np.ndarray  # (n, dim) float32
    prompt_tokens: int


def embedding_texts(raw_input: object) -> list[str]:
    """OpenAI's `input` as a list of texts; token-id arrays and other shapes are refused with a reason."""
    texts = [raw_input] if isinstance(raw_input, str) else raw_input
    if not isinstance(texts, list) or not texts:
        raise BadRequest("input must be a non-empty string or a non-empty list of strings")
    if any(isinstance(item, int | list) for item in texts):
        raise BadRequest("input as token-id arrays is not supported; send the text itself", code="unsupported_input")
    if not all(isinstance(item, str) for item in texts):
        raise BadRequest("input must be a string or a list of strings")
    if len(texts) > MAX_EMBEDDING_INPUTS:
        raise BadRequest(f"input has {len(texts)} texts; send at most {MAX_EMBEDDING_INPUTS} per request")
    return texts


def embed_inputs(
    rt: Runtime, principal: Principal, model_name: str, raw_input: object, dimensions: int | None, input_type: str
) -> Embeddings:
    """Embed the texts with a configured embedding model; runs the model, so call it off the event loop."""
    principal.require_full()
    texts = embedding_texts(raw_input)
    if input_type not in EMBEDDING_INPUT_TYPES:
        raise BadRequest(f"input_type must be one of {', '.join(EMBEDDING_INPUT_TYPES)}, not {input_type!r}")
    embedder = rt.registry.embedder(model_name)
    if dimensions is not None and dimensions != embedder.dim:
        raise BadRequest(
            f"model '{embedder.name}' makes {embedder.dim}-dimensional vectors and cannot shorten them; "
            f"omit 'dimensions' or send {embedder.dim}",
            code="unsupported_dimensions",
        )
    if input_type == "query":
        vectors = np.stack([embedder.embed_query(text) for text in texts])
    else:
        vectors = embedder.embed_documents(texts)
    prompt_tokens = sum(min(embedder.count_tokens(text), embedder.max_tokens) for text in texts)
    return Embeddings(model=embedder.name, vectors=np.asarray(vectors, dtype=np.float32), prompt_tokens=prompt_tokens)
