"""The default engine for `.gguf` chat models: llama.cpp (xllamacpp), one loaded server per model per process.

Templates, tokenizer, sampling, stop strings and tool-call parsing are llama.cpp's own; kb adds a queue
that a waiting client can leave, cancellation that reaches llama.cpp while it still reads the prompt, and
its own stop/tool handling on top (kb/ml/stops.py) so every engine streams the same way.
"""

from __future__ import annotations

import http.client
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from kb.config import Settings
from kb.errors import BadRequest, ServiceUnavailable
from kb.ml.llamacpp_server import ChunkStream, LlamaServerError, ServerConfig, shared_server
from kb.ml.messages import normalise_messages
from kb.ml.native_engine import unused_features_note
from kb.ml.remote import StreamState
from kb.ml.specs import ModelSpec
from kb.ml.stops import AnswerAssembler
from kb.ml.types import (
    Completion,
    GenerationCancelled,
    GenerationParams,
    StreamDelta,
    check_params,
    final_completion,
    room_for_answer,
)

POLL_SECONDS = 0.1  # how often a waiting or reading-the-prompt request looks at its cancel event
DEFAULT_CONTEXT = 4096  # per slot; the models' own 32k would reserve a KV cache few prompts here need
_END = object()

log = logging.getLogger(__name__)


class Engine(Protocol):
    """What the chat model needs from a loaded llama.cpp (LlamaServer; tests pass a fake)."""

    chat_template: str

    def post(self, path: str, body: dict) -> dict: ...

    def open_chat(self, body: dict) -> ChunkStream: ...


class LlamaCppChatModel:
    """A ChatModel over a llama.cpp server; `slots` requests run at once, the others wait their turn in kb."""

    def __init__(self, name: str, engine: Engine, context_length: int, slots: int = 1):
        self.name = name
        self.engine = engine
        self.context_length = context_length
        self.supports_tools = "tools" in engine.chat_template
        self._slots = threading.BoundedSemaphore(slots)
        self._count_lock = threading.Lock()
        self._marks: set[int] | None = None
        self.generating = 0  # requests holding a slot: reading their prompt or decoding

    def _post(self, path: str, body: dict) -> dict:
        try:
            return self.engine.post(path, body)
        except LlamaServerError as exc:
            raise ServiceUnavailable(f"llama.cpp failed on model '{self.name}': {exc}") from exc

    def count_tokens(self, text: str) -> int:
        """Tokens of plain text, without special tokens (the model's own tokenizer)."""
        return len(self._post("/tokenize", {"content": text, "add_special": False})["tokens"])

    def count_prompt_tokens(self, messages: list[dict], tools: list[dict] | None = None) -> int:
        """Tokens of the whole templated prompt, as llama.cpp will read it (equals its usage.prompt_tokens)."""
        if tools and not self.supports_tools:
            raise BadRequest(f"model '{self.name}' does not support tools (its chat template has no tool section)")
        body: dict = {"messages": normalise_messages(messages)}
        if tools:
            body["tools"] = tools
        prompt = self._post("/apply-template", body)["prompt"]
        tokens = self._post("/tokenize", {"content": prompt, "add_special": False, "parse_special": True})
        return len(tokens["tokens"])

    def stream(
        self, messages: list[dict], params: GenerationParams, cancel: threading.Event | None = None
    ) -> Iterator[StreamDelta | Completion]:
        """Yield answer pieces as llama.cpp decodes them, then the Completion; waits its turn for a slot."""
        check_params(params)
        prompt_tokens = self.count_prompt_tokens(messages, params.tools)
        budget = room_for_answer(self.name, self.context_length, prompt_tokens, params.max_tokens)
        body: dict = {
            "messages": normalise_messages(messages),
            "stream_options": {"include_usage": True},
            "max_tokens": budget,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "cache_prompt": True,  # reuse the KV cache of the prefix this slot read last (system prompt, quotes)
        }
        if params.stop:
            body["stop"] = params.stop  # llama.cpp stops early on them; the assembler keeps kb's exact semantics
        if params.seed is not None:
            body["seed"] = params.seed
        if params.tools:
            body["tools"] = params.tools
        if params.copy_bias and params.copy_from:
            body["logit_bias"] = [[token, params.copy_bias] for token in sorted(self.copy_tokens(params.copy_from))]
        return self._generate(body, params, prompt_tokens, cancel)

    def copy_tokens(self, text: str) -> set[int]:
        """The tokens a copy bias favours: those of `text`, of the citation marks [1]..[9], and of the end of an
        assistant turn (without the last, every biased token would push the answer's end further away)."""
        tokens = set(self._post("/tokenize", {"content": text, "add_special": False})["tokens"])
        return tokens | self._answer_marks()

    def _answer_marks(self) -> set[int]:
        if self._marks is None:
            # The end of an assistant turn as this model's own template writes it ("<|im_end|>" for Qwen2.5): what
            # follows an answer up to the next space. A last assistant message would be read as the start of the
            # reply, with no end, hence the user turn after it.
            turn = [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "ANSWER"},
                {"role": "user", "content": "q"},
            ]
            templated = self._post("/apply-template", {"messages": turn})["prompt"]
            end = (templated.split("ANSWER", 1)[-1].split() or [""])[0]
            marks = " ".join(f"[{n}]" for n in range(1, 10)) + f" {end}"
            body = {"content": marks, "add_special": False, "parse_special": True}
            self._marks = set(self._post("/tokenize", body)["tokens"])
        return self._marks

    def _acquire(self, should_stop: Callable[[], bool]) -> None:
        while not self._slots.acquire(timeout=POLL_SECONDS):
            if should_stop():
                raise GenerationCancelled("cancelled while waiting for the model")
        with self._count_lock:
            self.generating += 1

    def _release(self) -> None:
        with self._count_lock:
            self.generating -= 1
        self._slots.release()

    def _start(self, body: dict, items: queue.Queue) -> ChunkStream:
        """Open the request and read it in a worker thread that gives the slot back when llama.cpp is done."""
        try:
            chunks = self.engine.open_chat(body)
        except (OSError, LlamaServerError) as exc:
            self._release()
            raise ServiceUnavailable(f"llama.cpp is not answering for model '{self.name}': {exc}") from exc

        def read() -> None:
            try:
                for chunk in chunks.chunks():
                    items.put(chunk)
            except BaseException as exc:  # handed to the consumer, who re-raises it in its own thread
                items.put(exc)
            finally:
                self._release()
                items.put(_END)

        threading.Thread(target=read, name=f"kb-llama-{self.name}", daemon=True).start()
        return chunks

    def _generate(
        self, body: dict, params: GenerationParams, prompt_tokens: int, cancel: threading.Event | None
    ) -> Iterator[StreamDelta | Completion]:
        abandoned = threading.Event()

        def should_stop() -> bool:
            return abandoned.is_set() or (cancel is not None and cancel.is_set())

        self._acquire(should_stop)
        items: queue.Queue = queue.Queue()
        chunks = self._start(body, items)
        state, assembler, pieces = StreamState(), AnswerAssembler.for_params(params), 0
        try:
            while (item := self._next(items, should_stop)) is not _END:
                piece = state.absorb(self._checked(item))
                pieces += bool(piece)  # llama.cpp streams one token per chunk
                visible = assembler.feed(piece)
                if visible:
                    yield StreamDelta(visible)
                if assembler.stopped or should_stop():
                    break
            if should_stop():
                raise GenerationCancelled("generation cancelled")
            # llama.cpp's usage comes last; when kb's stop matcher ended the answer first, count it here
            usage = state.usage or {"prompt_tokens": prompt_tokens, "completion_tokens": pieces}
            last, completion = assembler.finish(
                int(usage["prompt_tokens"]), int(usage["completion_tokens"]), state.finish_reason or "stop"
            )
            if state.tool_calls:  # llama.cpp parsed <tool_call> blocks itself
                completion.tool_calls = state.openai_tool_calls() + completion.tool_calls
                completion.finish_reason = "tool_calls"
            if last:
                yield StreamDelta(last)
            yield completion
        finally:
            abandoned.set()
            chunks.close()  # a no-op after a finished answer; otherwise llama.cpp drops the task and frees the CPU

    def _next(self, items: queue.Queue, should_stop: Callable[[], bool]) -> object:
        while True:
            try:
                item = items.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if should_stop():  # nothing comes while llama.cpp reads the prompt: look at cancel meanwhile
                    raise GenerationCancelled("generation cancelled") from None
                continue
            if isinstance(item, (OSError, http.client.HTTPException)):  # the connection broke: llama.cpp died
                raise ServiceUnavailable(f"llama.cpp stopped answering for model '{self.name}': {item!r}") from item
            if isinstance(item, BaseException):
                raise item
            return item

    def _checked(self, chunk: dict) -> dict:
        error = chunk.get("error")
        if not error:
            return chunk
        if error.get("type") == "exceed_context_size_error":
            raise BadRequest(
                f"the prompt is {error.get('n_prompt_tokens')} tokens but model '{self.name}' has a context of "
                f"{error.get('n_ctx')} tokens; shorten the conversation or the quotes",
                code="context_length_exceeded",
            )
        raise ServiceUnavailable(f"llama.cpp failed on model '{self.name}': {error.get('message') or error}")

    def generate(
        self, messages: list[dict], params: GenerationParams, cancel: threading.Event | None = None
    ) -> Completion:
        """The whole answer at once."""
        return final_completion(self.stream(messages, params, cancel))


def load_llama_cpp_chat(spec: ModelSpec, gguf_file: Path, settings: Settings) -> LlamaCppChatModel:
    """The ChatModel for `gguf_file` on the process's shared llama.cpp server for it (loaded on first use)."""
    config = ServerConfig(
        gguf=gguf_file.resolve(),
        context_per_slot=spec.context_length or DEFAULT_CONTEXT,
        slots=spec.slots,
        threads=settings.torch_threads,
    )
    try:
        server = shared_server(config)
    except ImportError as exc:
        raise ServiceUnavailable(
            f"model '{spec.name}' needs the llama.cpp engine but xllamacpp is not installed "
            "(reinstall kb: `make install`), or set its engine to 'transformers'",
            code="model_unavailable",
        ) from exc
    except LlamaServerError as exc:
        raise ServiceUnavailable(
            f"llama.cpp cannot load chat model '{spec.name}' from {gguf_file} ({exc}): the file may be incomplete "
            "or not a GGUF chat model. Check its size and sha256 (`kb models verify` for catalog models), "
            "fetch it again, or configure another chat model",
            code="model_unavailable",
        ) from exc
    if note := unused_features_note():
        log.warning(note)
    return LlamaCppChatModel(spec.name, server, config.context_per_slot, config.slots)
