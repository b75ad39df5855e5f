"""Token-level pieces of local generation: a decoder over a KV cache, sampling and incremental detokenising."""

from __future__ import annotations

import inspect
from typing import Protocol

import torch


class Decoder(Protocol):
    """Runs a causal LM one request at a time: `start` reads the prompt, `step` feeds one chosen token."""

    def start(self, token_ids: list[int]) -> torch.Tensor: ...

    def step(self, token_id: int) -> torch.Tensor: ...


class TransformersDecoder:
    """The generic decoder: any transformers causal LM, driven through its own KV cache."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.cache: object | None = None
        # transformers renamed `past_key_values` to `cache` (5.2x); speak whichever this version knows
        parameters = inspect.signature(model.forward).parameters
        self._cache_argument = "cache" if "cache" in parameters else "past_key_values"

    @torch.inference_mode()
    def start(self, token_ids: list[int]) -> torch.Tensor:
        """Prefill the prompt; returns the logits for the first new token."""
        from transformers import DynamicCache

        self.cache = DynamicCache(config=self.model.config)
        output = self.model(
            input_ids=torch.tensor([token_ids]), **{self._cache_argument: self.cache}, use_cache=True, logits_to_keep=1
        )
        return output.logits[0, -1]

    @torch.inference_mode()
    def step(self, token_id: int) -> torch.Tensor:
        """Feed one token; returns the logits for the next."""
        output = self.model(input_ids=torch.tensor([[token_id]]), **{self._cache_argument: self.cache}, use_cache=True)
        return output.logits[0, -1]


def choose_token(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> int:
    """Greedy at temperature 0, otherwise nucleus sampling from the tempered distribution."""
    if temperature <= 0:
        return int(torch.argmax(logits))
    probabilities = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probabilities, descending=True)
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > top_p  # keeps at least the top token
        sorted_probs[outside] = 0.0
        choice = torch.multinomial(sorted_probs, 1, generator=generator)
        return int(order[choice])
    return int(torch.multinomial(probabilities, 1, generator=generator))


class IncrementalDetokenizer:
    """Decodes generated tokens into text pieces, waiting while a character is split across tokens."""

    def __init__(self, tokenizer: object):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def add(self, token_id: int) -> str:
        """The new text this token completes ('' while a multi-byte character is unfinished)."""
        self.ids.append(token_id)
        decode = self.tokenizer.decode
        before = decode(self.ids[self.prefix_offset : self.read_offset], skip_special_tokens=True)
        after = decode(self.ids[self.prefix_offset :], skip_special_tokens=True)
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        # decoding a window (not everything) keeps this cheap; the window's start gives spacing context
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return after[len(before) :]
