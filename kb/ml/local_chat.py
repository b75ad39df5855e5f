"""Local chat models run by transformers: chat templates, tools, streaming, stop strings, one request at a time."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from kb.errors import BadRequest, ServiceUnavailable
from kb.ml.decoding import Decoder, IncrementalDetokenizer, TransformersDecoder, choose_token
from kb.ml.lean_decoder import LeanDecoder, lean_decoder_supports
from kb.ml.messages import normalise_messages
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

log = logging.getLogger(__name__)
LOCK_POLL_SECONDS = 0.1
_END = object()


class TransformersChatModel:
    """A ChatModel over a transformers tokenizer and a Decoder; generation is serialised by a lock."""

    def __init__(self, name: str, tokenizer: object, decoder: Decoder, context_length: int, eos_token_ids: set[int]):
        template = getattr(tokenizer, "chat_template", None)
        if not isinstance(template, str):
            raise ServiceUnavailable(
                f"model '{name}' has no chat template; use an instruct/chat model", code="model_unavailable"
            )
        self.name = name
        self.tokenizer = tokenizer
        self.decoder = decoder
        self.context_length = context_length
        self.eos_token_ids = eos_token_ids
        self.supports_tools = "tools" in template
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        """Tokens of plain text, without special tokens."""
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def count_prompt_tokens(self, messages: list[dict], tools: list[dict] | None = None) -> int:
        """Tokens of the whole templated prompt, as the model will read it."""
        return len(self._prompt_ids(messages, tools))

    def _prompt_ids(self, messages: list[dict], tools: list[dict] | None) -> list[int]:
        if tools and not self.supports_tools:
            raise BadRequest(f"model '{self.name}' does not support tools (its chat template has no tool section)")
        text = self.tokenizer.apply_chat_template(
            normalise_messages(messages), tools=tools or None, add_generation_prompt=True, tokenize=False
        )
        return self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]

    def _acquire(self, should_stop: Callable[[], bool]) -> None:
        while not self._lock.acquire(timeout=LOCK_POLL_SECONDS):
            if should_stop():
                raise GenerationCancelled("cancelled while waiting for the model")

    def stream(
        self, messages: list[dict], params: GenerationParams, cancel: threading.Event | None = None
    ) -> Iterator[StreamDelta | Completion]:
        """Yield answer pieces as they are decoded, then the Completion; waits its turn for the model."""
        check_params(params)
        prompt = self._prompt_ids(messages, params.tools)
        budget = room_for_answer(self.name, self.context_length, len(prompt), params.max_tokens)
        return self._generate(prompt, budget, params, cancel)

    def _generate(
        self, prompt: list[int], budget: int, params: GenerationParams, cancel: threading.Event | None
    ) -> Iterator[StreamDelta | Completion]:
        """Decode in a worker thread that holds the model's lock; a consumer that goes away stops it."""
        abandoned = threading.Event()
        items: queue.Queue = queue.Queue()

        def should_stop() -> bool:
            return abandoned.is_set() or (cancel is not None and cancel.is_set())

        def produce() -> None:
            try:
                self._acquire(should_stop)
                try:
                    for item in self._decode(prompt, budget, params, should_stop):
                        items.put(item)
                finally:
                    self._lock.release()
            except BaseException as exc:  # handed to the consumer, who re-raises it in its own thread
                items.put(exc)
            items.put(_END)

        threading.Thread(target=produce, name=f"kb-generate-{self.name}", daemon=True).start()
        try:
            while (item := items.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            abandoned.set()

    def _decode(
        self, prompt: list[int], budget: int, params: GenerationParams, should_stop: Callable[[], bool]
    ) -> Iterator[StreamDelta | Completion]:
        generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        assembler = AnswerAssembler.for_params(params)
        detokenizer = IncrementalDetokenizer(self.tokenizer)
        logits = self.decoder.start(prompt)
        generated, finish_reason = 0, "length"
        while generated < budget:
            if should_stop():
                raise GenerationCancelled("generation cancelled")
            token = choose_token(logits, params.temperature, params.top_p, generator)
            generated += 1
            if token in self.eos_token_ids:
                finish_reason = "stop"
                break
            visible = assembler.feed(detokenizer.add(token))
            if visible:
                yield StreamDelta(visible)
            if assembler.stopped:
                break
            if generated < budget:
                logits = self.decoder.step(token)
        last, completion = assembler.finish(len(prompt), generated, finish_reason)
        if last:
            yield StreamDelta(last)
        yield completion

    def generate(
        self, messages: list[dict], params: GenerationParams, cancel: threading.Event | None = None
    ) -> Completion:
        """The whole answer at once."""
        return final_completion(self.stream(messages, params, cancel))


def _eos_ids(tokenizer: object, model: torch.nn.Module) -> set[int]:
    configured = model.generation_config.eos_token_id if model.generation_config is not None else None
    ids = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def load_transformers_chat(
    spec: ModelSpec, folder_or_id: str, trust_remote_code: bool, weight_bits: tuple[int, int] | None = None
) -> TransformersChatModel:
    """Load tokenizer and model, choose the fastest decoder that fits, and wrap them as a ChatModel.

    `weight_bits` (layers, embedding) is the precision the weights were shipped in (GGUF), kept by the fast decoder.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder_or_id, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            folder_or_id,
            dtype="auto" if spec.dtype == "auto" else getattr(torch, spec.dtype),
            trust_remote_code=trust_remote_code,
        ).eval()
    except (OSError, ValueError) as exc:
        hint = "" if Path(folder_or_id).exists() else " (hub ids must already be in the local Hugging Face cache)"
        raise ServiceUnavailable(
            f"cannot load chat model '{spec.name}' from {folder_or_id}{hint}: {exc}", code="model_unavailable"
        ) from exc
    context_length = spec.context_length or int(getattr(model.config, "max_position_embeddings", 0) or 2048)
    return TransformersChatModel(
        spec.name, tokenizer, choose_decoder(spec, model, weight_bits), context_length, _eos_ids(tokenizer, model)
    )


def choose_decoder(spec: ModelSpec, model: torch.nn.Module, weight_bits: tuple[int, int] | None) -> Decoder:
    """The lean decoder where the architecture allows (GGUF weights stay packed), else transformers' own forward."""
    if spec.fast_decode and lean_decoder_supports(model.config):
        return LeanDecoder(model, *(weight_bits or (16, 16)))
    return TransformersDecoder(model)
