"""Deterministic stand-ins for the real models, for fast tests of the logic around them."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from kb.errors import BadRequest, UpstreamError
from kb.ml.messages import last_user_text, normalise_messages
from kb.ml.stops import TOOL_CALL_OPEN, AnswerAssembler
from kb.ml.types import Completion, GenerationCancelled, GenerationParams, StreamDelta, check_params, final_completion

WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
PIECE = re.compile(r"\s*\S+")


def _bucket(feature: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    number = int.from_bytes(digest, "little")
    return number % dim, 1.0 if (number >> 40) & 1 else -1.0


class HashEmbedder:
    """An Embedder from hashed words and character trigrams: deterministic, normalised, similar texts land close.

    Each `variant` hashes with its own salt, so two variants of one fake model give unrelated vectors
    (what mixing real variants does, only more plainly).
    """

    def __init__(
        self,
        dim: int = 64,
        name: str = "hash",
        max_tokens: int = 512,
        variant: str = "hash-v1",
        chunk_tokens: int | None = 256,
        hybrid_weight: float | None = None,
    ):
        self.name = name
        self.dim = dim
        self.max_tokens = max_tokens
        self.variant = variant
        self.chunk_tokens = chunk_tokens  # 256: the chunk size tests of the pipeline were written for
        self.hybrid_weight = hybrid_weight
        self._salt = "" if variant == "hash-v1" else variant + ":"

    def count_tokens(self, text: str) -> int:
        """Words and punctuation marks."""
        return len(WORD.findall(text))

    def _embed(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dim, dtype=np.float32)
        for word in WORD.findall(text.lower())[: self.max_tokens]:
            index, sign = _bucket(self._salt + "w:" + word, self.dim)
            vector[index] += sign
            padded = f"#{word}#"
            for start in range(len(padded) - 2):
                index, sign = _bucket(self._salt + "c:" + padded[start : start + 3], self.dim)
                vector[index] += 0.5 * sign
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            vector[0], norm = 1.0, 1.0  # an empty text still gets a unit vector
        return vector / norm

    def embed_documents(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """(n, dim) float32, one row per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._embed(text) for text in texts])

    def embed_query(self, text: str) -> np.ndarray:
        """(dim,) float32."""
        return self._embed(text)


class EchoChatModel:
    """A ChatModel answering "Echo: <last user message>", word by word, with stop strings, limits and tool calls.

    When tools are offered and the last user message names one of them, it calls that tool instead
    (arguments: `{"query": <the message>}`).
    """

    def __init__(self, name: str = "echo", context_length: int = 2048, supports_tools: bool = True):
        self.name = name
        self.context_length = context_length
        self.supports_tools = supports_tools
        self.calls: list[list[dict]] = []  # messages of every request, for assertions

    def count_tokens(self, text: str) -> int:
        """Words and punctuation marks."""
        return len(WORD.findall(text))

    def count_prompt_tokens(self, messages: list[dict], tools: list[dict] | None = None) -> int:
        """Tokens of all message contents plus the tool schemas, 3 per message for the role markers."""
        clean = normalise_messages(messages)
        schema_tokens = self.count_tokens(json.dumps(tools)) if tools else 0
        return sum(3 + self.count_tokens(m["content"]) for m in clean) + schema_tokens

    def _answer(self, messages: list[dict], tools: list[dict] | None) -> str:
        question = last_user_text(messages)
        for tool in tools or []:
            name = tool.get("function", {}).get("name", "")
            if name and name in question:
                return f"{TOOL_CALL_OPEN}\n{json.dumps({'name': name, 'arguments': {'query': question}})}\n</tool_call>"
        return f"Echo: {question}"

    def stream(
        self, messages: list[dict], params: GenerationParams, cancel: threading.Event | None = None
    ) -> Iterator[StreamDelta | Completion]:
        """Yield the answer in whitespace-led pieces, one 'token' each, then the Completion."""
        check_params(params)
        if params.tools and not self.supports_tools:
            raise BadRequest(f"model '{self.name}' does not support tools")
        prompt_tokens = self.count_prompt_tokens(messages, params.tools)
        if prompt_tokens >= self.context_length:
            raise BadRequest(
                f"the prompt is {prompt_tokens} tokens but model '{self.name}' has a context of {self.context_length} tokens",
                code="context_length_exceeded",
            )
        self.calls.append(list(messages))
        return self._pieces(self._answer(messages, params.tools), prompt_tokens, params, cancel)

    def _pieces(
        self, answer: str, prompt_tokens: int, params: GenerationParams, cancel: threading.Event | None
    ) -> Iterator[StreamDelta | Completion]:
        budget = min(params.max_tokens or self.context_length, self.context_length - prompt_tokens)
        assembler = AnswerAssembler.for_params(params)
        pieces = PIECE.findall(answer)
        used, finish_reason = 0, "stop"
        for piece in pieces:
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled("generation cancelled")
            if used == budget:
                finish_reason = "length"
                break
            used += 1
            visible = assembler.feed(piece)
            if visible:
                yield StreamDelta(visible)
            if assembler.stopped:
                break
        last, completion = assembler.finish(prompt_tokens, used, finish_reason)
        if last:
            yield StreamDelta(last)
        yield completion

    def generate(
        self, messages: list[dict], params: GenerationParams, cancel: threading.Event | None = None
    ) -> Completion:
        """The whole answer at once."""
        return final_completion(self.stream(messages, params, cancel))


TINY_CHAT_TEMPLATE = (
    "{%- set ns = namespace(system='You are a helpful assistant.') %}"
    "{%- if messages and messages[0]['role'] == 'system' %}{%- set ns.system = messages[0]['content'] %}{%- endif %}"
    "{{- '<|im_start|>system\\n' + ns.system }}"
    "{%- if tools %}"
    "{{- '\\n\\n# Tools\\n\\nYou may call functions. Their signatures:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}"
    '{{- \'\\n</tools>\\n\\nReturn each call as <tool_call>\\n{"name": <name>, "arguments": <json object>}\\n</tool_call>\' }}'
    "{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'tool' %}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + message['content'] + '\\n</tool_response><|im_end|>\\n' }}"
    "{%- elif not (loop.first and message['role'] == 'system') %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + (message['content'] or '') }}"
    "{%- for call in message.get('tool_calls') or [] %}"
    "{{- '\\n<tool_call>\\n' + ({'name': call['function']['name'], 'arguments': call['function']['arguments']} | tojson) + '\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# Qwen2's pre-tokenizer split: transformers re-applies it when loading a qwen2 tokenizer, so build with it too.
QWEN_SPLIT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
TINY_CORPUS = [
    "You are a helpful assistant. Answer the question using the quotes below.",
    "Retrieval finds quotes; the model answers with citations like [1] and [2].",
    "PostgreSQL keeps vectors in pgvector; HNSW indexes make search fast.",
    '<tool_call> <tools> </tools> </tool_call> {"name": "search", "arguments": {"query": 1}}',
    "Question: What is the capital of France? Answer: Paris. 0123456789",
    "知识库问答系统根据引用回答问题。北京是中国的首都。",
]


def build_tiny_tokenizer(vocab_size: int = 600) -> object:
    """A byte-level BPE tokenizer trained on a few sentences, with ChatML specials and a tool-aware template."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token=None))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte, so any text encodes
        show_progress=False,
    )
    backend.train_from_iterator(TINY_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        model_max_length=100_000,  # the model config holds the real context length
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


# A stand-in for an xllamacpp build that imports fine and dies of SIGSEGV when it loads a model, as the AMX
# build did in its first matrix multiply. Put first on PYTHONPATH of a child process.
CRASHING_XLLAMACPP = """import os, signal
class CommonParams:
    def __init__(self):
        self.model = self.cpuparams = self.cpuparams_batch = self
def Server(params):
    os.kill(os.getpid(), signal.SIGSEGV)
"""


def write_crashing_xllamacpp(folder: Path) -> Path:
    """Write CRASHING_XLLAMACPP as `xllamacpp.py` in `folder`; returns the folder."""
    (folder / "xllamacpp.py").write_text(CRASHING_XLLAMACPP)
    return folder


def build_tiny_qwen(path: str | Path, seed: int = 0, context_length: int = 512) -> str:
    """Write a tiny random Qwen2 chat model (two layers, ~600-token vocabulary) to `path`; returns the path."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tiny_tokenizer()
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context_length,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=end_of_turn,
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config = GenerationConfig(eos_token_id=end_of_turn, pad_token_id=config.pad_token_id)
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return str(path)


class ScriptedChatModel(EchoChatModel):
    """An EchoChatModel whose replies come from a script: a list used in turn, or a function of the messages.

    With `fail_after`, every stream raises UpstreamError after that many pieces (a provider dying mid-answer).
    """

    def __init__(
        self,
        replies: Sequence[str] | Callable[[list[dict]], str],
        name: str = "scripted",
        context_length: int = 2048,
        fail_after: int | None = None,
    ):
        super().__init__(name=name, context_length=context_length)
        self.replies = replies if callable(replies) else list(replies)
        self.fail_after = fail_after

    def _answer(self, messages: list[dict], tools: list[dict] | None) -> str:
        if callable(self.replies):
            return self.replies(messages)
        if not self.replies:
            raise AssertionError("ScriptedChatModel ran out of scripted replies")
        return self.replies.pop(0)

    def _pieces(
        self, answer: str, prompt_tokens: int, params: GenerationParams, cancel: threading.Event | None
    ) -> Iterator[StreamDelta | Completion]:
        for index, item in enumerate(super()._pieces(answer, prompt_tokens, params, cancel)):
            if self.fail_after is not None and index >= self.fail_after:
                raise UpstreamError(f"model '{self.name}' failed after {self.fail_after} pieces")
            yield item
