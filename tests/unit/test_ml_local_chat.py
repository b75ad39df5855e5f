"""A tiny random Qwen2 model, built offline, loaded through the registry and generating with real transformers."""

from __future__ import annotations

import json
import os
import threading

import pytest

from kb.config import Settings
from kb.errors import BadRequest
from kb.ml.local_chat import TransformersChatModel
from kb.ml.registry import ModelRegistry, UnknownModel
from kb.ml.types import Completion, GenerationCancelled, GenerationParams, StreamDelta
from kb.testing import build_tiny_qwen

os.environ.setdefault("HF_HUB_OFFLINE", "1")
QUESTION = [{"role": "system", "content": "Answer using the quotes."}, {"role": "user", "content": "What is pgvector?"}]
TOOLS = [
    {
        "type": "function",
        "function": {"name": "search", "description": "Search the knowledge base", "parameters": {"type": "object"}},
    }
]


@pytest.fixture(scope="module")
def tiny_registry(tmp_path_factory) -> ModelRegistry:
    root = tmp_path_factory.mktemp("tiny")
    folder = build_tiny_qwen(root / "tiny-qwen")
    models_file = root / "models.json"
    models_file.write_text(
        json.dumps(
            {
                "chat": [
                    {"name": "tiny", "path": folder},
                    {"name": "tiny-generic", "path": folder, "fast_decode": False, "context_length": 64},
                ]
            }
        )
    )
    return ModelRegistry(Settings(data_dir=root / "data", models_file=models_file, chat_model="tiny", torch_threads=1))


@pytest.fixture(scope="module")
def tiny(tiny_registry) -> TransformersChatModel:
    return tiny_registry.chat()


def test_registry_loads_the_tiny_model_once(tiny_registry, tiny):
    assert tiny_registry.chat("tiny") is tiny
    assert "tiny" in tiny_registry.loaded()
    assert tiny.context_length == 512 and tiny.supports_tools


def test_unknown_model_names_the_configured_ones(tiny_registry):
    with pytest.raises(
        UnknownModel,
        match=r"unknown chat model 'nope'; configured: qwen2.5-coder-0.5b, qwen2.5-coder-1.5b, smollm2, tiny, tiny-generic",
    ) as info:
        tiny_registry.chat("nope")
    assert info.value.status_code == 400


def test_greedy_generation_is_deterministic_and_counts_real_tokens(tiny):
    params = GenerationParams(temperature=0, max_tokens=12)
    first, second = tiny.generate(QUESTION, params), tiny.generate(QUESTION, params)
    assert first == second
    assert first.prompt_tokens == tiny.count_prompt_tokens(QUESTION) > 10
    assert 1 <= first.completion_tokens <= 12
    if first.finish_reason == "length":
        assert first.completion_tokens == 12
    assert tiny.count_tokens(first.text) <= first.completion_tokens


def test_streamed_pieces_add_up_to_the_completion(tiny):
    items = list(tiny.stream(QUESTION, GenerationParams(temperature=0, max_tokens=12)))
    assert isinstance(items[-1], Completion)
    assert all(isinstance(item, StreamDelta) for item in items[:-1])
    assert "".join(item.text for item in items[:-1]) == items[-1].text


def test_sampling_with_a_seed_repeats(tiny):
    params = GenerationParams(temperature=1.0, top_p=0.9, max_tokens=10, seed=7)
    assert tiny.generate(QUESTION, params).text == tiny.generate(QUESTION, params).text


def test_stop_string_ends_generation_without_appearing(tiny):
    full = tiny.generate(QUESTION, GenerationParams(temperature=0, max_tokens=20)).text
    assert len(full) > 4, "the random model should say something"
    stop = full[2:4]
    cut = tiny.generate(QUESTION, GenerationParams(temperature=0, max_tokens=20, stop=[stop]))
    assert cut.text == full[: full.index(stop)]
    assert cut.finish_reason == "stop"


def test_fast_and_generic_decoders_agree(tiny, tiny_registry):
    generic = tiny_registry.chat("tiny-generic")
    params = GenerationParams(temperature=0, max_tokens=16)
    assert type(generic.decoder).__name__ == "TransformersDecoder" and type(tiny.decoder).__name__ == "LeanDecoder"
    assert tiny.generate(QUESTION, params).text == generic.generate(QUESTION, params).text


def test_prompt_longer_than_the_context_is_refused_with_counts(tiny_registry):
    generic = tiny_registry.chat("tiny-generic")
    long_question = [{"role": "user", "content": "pgvector " * 80}]
    prompt_tokens = generic.count_prompt_tokens(long_question)
    with pytest.raises(BadRequest, match=rf"the prompt is {prompt_tokens} tokens .* context of 64 tokens"):
        generic.stream(long_question, GenerationParams())


def test_max_tokens_defaults_to_what_fits_in_the_context(tiny_registry):
    generic = tiny_registry.chat("tiny-generic")
    completion = generic.generate(QUESTION, GenerationParams(temperature=0, max_tokens=1000))
    assert completion.prompt_tokens + completion.completion_tokens <= 64


def test_cancel_stops_generation_promptly(tiny):
    cancel = threading.Event()
    stream = tiny.stream(QUESTION, GenerationParams(temperature=1.0, max_tokens=200, seed=1), cancel)
    cancel.set()
    with pytest.raises(GenerationCancelled):
        list(stream)
    assert tiny.generate(QUESTION, GenerationParams(max_tokens=2)).completion_tokens <= 2  # the lock was released


class GatedDecoder:
    """Wraps a decoder so each new token waits for the test's permission."""

    def __init__(self, decoder):
        self.decoder, self.permits, self.steps = decoder, threading.Semaphore(0), 0

    def start(self, token_ids):
        return self.decoder.start(token_ids)

    def step(self, token_id):
        self.permits.acquire()
        self.steps += 1
        return self.decoder.step(token_id)


def test_cancel_during_generation_stops_it_at_the_next_token(tiny):
    gated = GatedDecoder(tiny.decoder)
    model = TransformersChatModel("gated", tiny.tokenizer, gated, 512, eos_token_ids=set())
    cancel = threading.Event()
    stream = model.stream(QUESTION, GenerationParams(temperature=0, max_tokens=400), cancel)
    for _ in range(3):  # let a few tokens through, until something is visible
        gated.permits.release()
    assert isinstance(next(stream), StreamDelta)
    cancel.set()
    gated.permits.release()
    with pytest.raises(GenerationCancelled):
        list(stream)
    assert gated.steps <= 4


def test_an_abandoned_stream_frees_the_model(tiny):
    stream = tiny.stream(QUESTION, GenerationParams(temperature=1.0, max_tokens=400, seed=3))
    next(stream)
    stream.close()  # what a server does when its client disconnects
    finished = threading.Event()
    worker = threading.Thread(target=lambda: (tiny.generate(QUESTION, GenerationParams(max_tokens=2)), finished.set()))
    worker.start()
    worker.join(timeout=60)
    assert finished.is_set()


def test_requests_wait_their_turn(tiny):
    results: list[Completion] = []
    params = GenerationParams(temperature=0, max_tokens=8)
    threads = [threading.Thread(target=lambda: results.append(tiny.generate(QUESTION, params))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and results[0] == results[1] == results[2]


def test_tools_reach_the_template(tiny):
    with_tools = tiny.count_prompt_tokens(QUESTION, TOOLS)
    assert with_tools > tiny.count_prompt_tokens(QUESTION)
    text = tiny.tokenizer.apply_chat_template(QUESTION, tools=TOOLS, add_generation_prompt=True, tokenize=False)
    assert '"name": "search"' in text and "<tool_call>" in text


def test_tool_call_history_renders(tiny):
    history = [
        *QUESTION,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": '{"q": "pgvector"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "pgvector is a Postgres extension"},
    ]
    completion = tiny.generate(history, GenerationParams(temperature=0, max_tokens=4, tools=TOOLS))
    assert completion.prompt_tokens > tiny.count_prompt_tokens(QUESTION, TOOLS)


def test_tools_on_a_model_whose_template_lacks_them_are_a_bad_request(tiny):
    plain = TransformersChatModel("plain", tiny.tokenizer, tiny.decoder, 512, tiny.eos_token_ids)
    plain.supports_tools = False
    with pytest.raises(BadRequest, match="does not support tools"):
        plain.stream(QUESTION, GenerationParams(tools=TOOLS))


def test_detokenizer_never_splits_a_character_across_pieces(tiny):
    from kb.ml.decoding import IncrementalDetokenizer

    text = "龙猫喜欢橡果。 PostgreSQL stores vectors!"
    ids = tiny.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert any("\ufffd" in tiny.tokenizer.decode([token]) for token in ids), (
        "some token should hold part of a character"
    )
    detokenizer = IncrementalDetokenizer(tiny.tokenizer)
    pieces = [detokenizer.add(token) for token in ids]
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)
