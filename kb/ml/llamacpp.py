"""The optional llama.cpp engine for `.gguf` chat models (install `kb[llamacpp]`); never needed by default.

Only the forward pass moves to llama.cpp: chat templates, tools, stop strings, sampling, counts and the
one-request-at-a-time lock are the same code as the transformers path (TransformersChatModel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kb.config import Settings
from kb.errors import ServiceUnavailable
from kb.ml.loading import gguf_tokenizer
from kb.ml.local_chat import TransformersChatModel
from kb.ml.specs import ModelSpec


class LlamaCppDecoder:
    """A Decoder whose forward pass is llama.cpp's, over the GGUF file as shipped."""

    def __init__(self, llm: object):
        self.llm = llm
        self.vocab_size = llm.n_vocab()

    def _last_logits(self) -> torch.Tensor:
        import llama_cpp

        pointer = llama_cpp.llama_get_logits(self.llm.ctx)
        return torch.from_numpy(np.ctypeslib.as_array(pointer, shape=(self.vocab_size,)).copy())

    def start(self, token_ids: list[int]) -> torch.Tensor:
        """Prefill the prompt from an empty context; returns the logits for the first new token."""
        self.llm.reset()
        self.llm.eval(token_ids)
        return self._last_logits()

    def step(self, token_id: int) -> torch.Tensor:
        """Feed one token; returns the logits for the next."""
        self.llm.eval([token_id])
        return self._last_logits()


def load_llama_cpp_chat(spec: ModelSpec, gguf_file: Path, settings: Settings) -> TransformersChatModel:
    """A ChatModel running `gguf_file` in llama.cpp, with the file's own tokenizer and chat template."""
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise ServiceUnavailable(
            f"model '{spec.name}' asks for engine 'llama.cpp' but llama-cpp-python is not installed "
            "(pip install 'kb[llamacpp]'), or set its engine to 'transformers'",
            code="model_unavailable",
        ) from exc
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_tokenizer(gguf_file, settings.model_cache_dir))
    llm = Llama(
        model_path=str(gguf_file),
        n_ctx=spec.context_length or 0,  # 0: the context the model was trained with
        n_threads=settings.torch_threads,
        n_threads_batch=settings.torch_threads,
        verbose=False,
    )
    end_of_turn = {tokenizer.eos_token_id, llm.token_eos()} - {None}
    return TransformersChatModel(spec.name, tokenizer, LlamaCppDecoder(llm), llm.n_ctx(), end_of_turn)
