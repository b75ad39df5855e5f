"""Chat models and embedders served by remote OpenAI-compatible providers (vLLM, SGLang, Ollama, One API)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import httpx
import numpy as np

from kb.errors import UpstreamError, UpstreamTimeout
from kb.ml.messages import normalise_messages
from kb.ml.providers import ProviderFailed, ProviderPool, check_response, describe_failure, parse_json, sse_payloads
from kb.ml.specs import ModelSpec, ProviderSpec
from kb.ml.stops import AnswerAssembler
from kb.ml.types import Completion, GenerationCancelled, GenerationParams, StreamDelta, check_params, final_completion

WIDE_CHAR = re.compile(r"[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]")
DEFAULT_REMOTE_CONTEXT = 8192
_END_OF_BODY = object()


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate: one token per CJK character, one per four other characters."""
    wide = len(WIDE_CHAR.findall(text))
    return wide + (len(text) - wide + 3) // 4


@dataclass
class StreamState:
    finish_reason: str | None = None
    usage: dict | None = None
    tool_calls: dict[int, dict] = field(default_factory=dict)
    ended: bool = False  # the body ended
    done: bool = False  # ... with the closing [DONE] (the end of the body alone is not a finished answer)

    def next_text(self, payloads: Iterator[dict | None]) -> str:
        """Take the next chunk and return its content text; "" once the body has ended."""
        payload = next(payloads, _END_OF_BODY)
        if not isinstance(payload, dict):
            self.ended, self.done = True, payload is None
            return ""
        return self.absorb(payload)

    def absorb(self, payload: dict) -> str:
        """Take one chunk's metadata; return its content text."""
        try:
            return self._absorb(payload)
        except (AttributeError, TypeError, KeyError, ValueError, IndexError) as exc:
            raise ProviderFailed(f"sent a malformed chunk: {str(payload)[:120]}") from exc

    def _absorb(self, payload: dict) -> str:
        if isinstance(payload.get("usage"), dict):
            self.usage = payload["usage"]
        choices = payload.get("choices") or []
        if not choices:
            return ""
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        delta = choice.get("delta") or {}
        for call in delta.get("tool_calls") or []:
            slot = self.tool_calls.setdefault(int(call.get("index", 0)), {"id": "", "name": "", "arguments": ""})
            slot["id"] = call.get("id") or slot["id"]
            function = call.get("function") or {}
            slot["name"] += function.get("name") or ""
            slot["arguments"] += function.get("arguments") or ""
        content = delta.get("content")
        return content if isinstance(content, str) else ""

    def openai_tool_calls(self) -> list[dict]:
        return [
            {
                "id": c["id"] or f"call_{i}",
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for i, c in sorted(self.tool_calls.items())
        ]


@dataclass
class _OpenStream:
    """A provider's stream read up to its first answer text (`first_text`, "" if it finished without any)."""

    provider: ProviderSpec
    response: httpx.Response
    payloads: Iterator[dict | None]
    state: StreamState
    first_text: str


class RemoteChatModel:
    """A ChatModel over providers tried in turn: a stream broken midway is an error (the client saw part of
    it), a whole answer (`generate`) broken midway is asked of the next provider."""

    def __init__(self, spec: ModelSpec):
        self.name = spec.name
        self.context_length = spec.context_length or DEFAULT_REMOTE_CONTEXT
        self.supports_tools = True
        self.pool = ProviderPool(spec)

    def count_tokens(self, text: str) -> int:
        """An estimate: remote tokenizers are not available here."""
        return estimate_tokens(text)

    def count_prompt_tokens(self, messages: list[dict], tools: list[dict] | None = None) -> int:
        """An estimate of the prompt, 4 tokens per message for the template."""
        clean = normalise_messages(messages)
        return sum(4 + estimate_tokens(m["content"]) for m in clean) + (estimate_tokens(str(tools)) if tools else 0)

    def _body(self, messages: list[dict], params: GenerationParams) -> dict:
        body: dict = {
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.max_tokens is not None:
            body["max_tokens"] = params.max_tokens
        if params.stop:
            body["stop"] = params.stop[:4]  # OpenAI's limit; all of them are also applied here
        if params.seed is not None:
            body["seed"] = params.seed
        if params.tools:
            body["tools"] = params.tools
        return body

    def _open(self, provider: ProviderSpec, body: dict, cancel: threading.Event | None) -> _OpenStream:
        """Start the stream and read it up to the first answer text.

        Until that text arrives nobody has seen anything of this answer, so whatever goes wrong before
        (a malformed first chunk, a drop or a stall after the role chunk) is ProviderFailed: the next
        provider takes over.
        """
        request = self.pool.client.build_request(
            "POST",
            self.pool.url(provider, "chat/completions"),
            json={**body, "model": self.pool.upstream_model(provider)},
            headers=self.pool.headers(provider),
        )
        response = self.pool.client.send(request, stream=True)
        try:
            check_response(provider, response)
            content_type = response.headers.get("content-type", "")
            if not content_type.startswith("text/event-stream"):
                raise ProviderFailed(
                    f"answered {content_type or 'no content type'} instead of an event stream: {response.read()[:120]!r}"
                )
            payloads = sse_payloads(response.iter_lines())
            state = StreamState()
            text = state.next_text(payloads)
            if state.ended:
                raise ProviderFailed("ended the stream before sending anything")
            while not text and state.finish_reason is None and not state.ended:
                if cancel is not None and cancel.is_set():
                    raise GenerationCancelled("generation cancelled")
                text = state.next_text(payloads)
            if state.ended and not state.done and state.finish_reason is None:
                raise ProviderFailed("ended the stream without finishing the answer")
            return _OpenStream(provider, response, payloads, state, text)
        except BaseException:
            response.close()
            raise

    def stream(
        self, messages: list[dict], params: GenerationParams, cancel: threading.Event | None = None
    ) -> Iterator[StreamDelta | Completion]:
        """Yield answer pieces from the first provider that answers, then the Completion."""
        check_params(params)
        body = self._body(normalise_messages(messages), params)
        return self._relay(messages, body, params, cancel)

    def _relay(
        self, messages: list[dict], body: dict, params: GenerationParams, cancel: threading.Event | None
    ) -> Iterator[StreamDelta | Completion]:
        opened = self.pool.run(lambda provider: self._open(provider, body, cancel))
        assembler = AnswerAssembler.for_params(params)
        try:
            yield from self._answer(opened, assembler, messages, params, cancel)
        except (httpx.TransportError, ProviderFailed) as exc:
            self.pool.record_failure(opened.provider, describe_failure(exc))
            error = UpstreamTimeout if isinstance(exc, httpx.TimeoutException) else UpstreamError
            raise error(
                f"{opened.provider.label} broke off the answer after {len(assembler.text)} characters: "
                f"{describe_failure(exc)}"
            ) from exc

    def _answer(
        self,
        opened: _OpenStream,
        assembler: AnswerAssembler,
        messages: list[dict],
        params: GenerationParams,
        cancel: threading.Event | None,
    ) -> Iterator[StreamDelta | Completion]:
        """The rest of an opened stream; a provider breaking off raises httpx.TransportError or ProviderFailed."""
        state, text = opened.state, opened.first_text
        try:
            while True:
                visible = assembler.feed(text)
                if visible:
                    yield StreamDelta(visible)
                if assembler.stopped or state.ended:
                    break
                if cancel is not None and cancel.is_set():
                    raise GenerationCancelled("generation cancelled")
                text = state.next_text(opened.payloads)
        finally:
            opened.response.close()
        if not assembler.stopped and state.finish_reason is None and not state.done:
            raise ProviderFailed("ended the stream without finishing the answer")
        yield from self._finish(messages, params, assembler, state)

    def _finish(
        self, messages: list[dict], params: GenerationParams, assembler: AnswerAssembler, state: StreamState
    ) -> Iterator[StreamDelta | Completion]:
        usage = state.usage or {}
        finish_reason = state.finish_reason if state.finish_reason in ("stop", "length", "tool_calls") else "stop"
        prompt_tokens = int(usage.get("prompt_tokens") or self.count_prompt_tokens(messages, params.tools))
        last, completion = assembler.finish(prompt_tokens, 0, finish_reason)
        completion.completion_tokens = int(usage.get("completion_tokens") or estimate_tokens(completion.text))
        if state.tool_calls:
            completion.tool_calls = state.openai_tool_calls() + completion.tool_calls
            completion.finish_reason = "tool_calls"
        if last:
            yield StreamDelta(last)
        yield completion

    def generate(
        self, messages: list[dict], params: GenerationParams, cancel: threading.Event | None = None
    ) -> Completion:
        """The whole answer from the first provider that gives one.

        Nobody sees any of it before it is complete, so a provider that breaks off midway is passed over
        like one that fails to start, and the next one answers from the beginning.
        """
        check_params(params)
        body = self._body(normalise_messages(messages), params)

        def whole_answer(provider: ProviderSpec) -> Completion:
            opened = self._open(provider, body, cancel)
            assembler = AnswerAssembler.for_params(params)
            return final_completion(self._answer(opened, assembler, messages, params, cancel))

        return self.pool.run(whole_answer)


class RemoteEmbedder:
    """An Embedder over `/v1/embeddings`, batched, with the spec's prefixes; vectors are re-normalised here."""

    def __init__(self, spec: ModelSpec):
        self.name = spec.name
        self.max_tokens = spec.context_length or 512
        self.variant = "remote"
        self.query_prefix = spec.query_prefix
        self.document_prefix = spec.document_prefix
        self.normalize = spec.normalize
        self.chunk_tokens = spec.chunk_tokens
        self.hybrid_weight = spec.hybrid_weight
        self.pool = ProviderPool(spec)
        self._dim = spec.dim

    @property
    def dim(self) -> int:
        """From the spec, or learnt from one probe request."""
        if self._dim is None:
            self._dim = int(self._embed(["dimension probe"]).shape[1])
        return self._dim

    def count_tokens(self, text: str) -> int:
        """An estimate: remote tokenizers are not available here."""
        return estimate_tokens(text)

    def _request(self, provider: ProviderSpec, texts: list[str]) -> np.ndarray:
        response = self.pool.client.post(
            self.pool.url(provider, "embeddings"),
            json={"model": self.pool.upstream_model(provider), "input": texts},
            headers=self.pool.headers(provider),
        )
        check_response(provider, response)
        data = parse_json(response).get("data")
        try:
            rows = sorted(data, key=lambda row: row["index"])
            vectors = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        except (TypeError, KeyError, ValueError) as exc:
            raise ProviderFailed(f"answered an embeddings body without usable 'data': {exc}") from exc
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ProviderFailed(f"returned {len(vectors)} vectors for {len(texts)} texts")
        if self._dim is not None and vectors.shape[1] != self._dim:
            raise ProviderFailed(f"returned {vectors.shape[1]}-dimensional vectors, expected {self._dim}")
        return vectors

    def _embed(self, texts: list[str]) -> np.ndarray:
        vectors = self.pool.run(lambda provider: self._request(provider, texts))
        if self.normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.where(norms == 0, 1.0, norms)
        return vectors.astype(np.float32)

    def embed_documents(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """(n, dim) float32, sent in batches, each text with the document prefix."""
        prefixed = [self.document_prefix + text for text in texts]
        batches = [self._embed(prefixed[i : i + batch_size]) for i in range(0, len(prefixed), batch_size)]
        return np.concatenate(batches) if batches else np.zeros((0, self.dim), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        """(dim,) float32, with the query prefix."""
        return self._embed([self.query_prefix + text])[0]
