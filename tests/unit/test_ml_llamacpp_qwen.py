"""The llama.cpp engine on the real Qwen2.5-Coder-0.5B file: the ChatModel contract, and cancels that free the CPU."""

from __future__ import annotations

import json
import threading
import time

import pytest

from kb.config import Settings
from kb.errors import ServiceUnavailable
from kb.ml.registry import ModelRegistry
from kb.ml.types import GenerationCancelled, GenerationParams, StreamDelta
from tests.model_files import require_qwen_05b

QUESTION = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]


def registry_for(tmp_path, path: str) -> ModelRegistry:
    models_file = tmp_path / "models.json"
    models_file.write_text(json.dumps({"chat": [{"name": "qwen", "path": path}]}))
    return ModelRegistry(
        Settings(
            _env_file=None, data_dir=tmp_path / "data", models_file=models_file, chat_model="qwen", torch_threads=2
        )
    )


def wait_until(condition, timeout: float, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(every)
    return condition()


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    return registry_for(tmp_path_factory.mktemp("qwen"), str(require_qwen_05b())).chat()


@pytest.mark.slow
def test_qwen_streams_counts_stops_and_repeats_under_a_seed(qwen, tmp_path):
    greedy = GenerationParams(temperature=0, max_tokens=40)
    answer = qwen.generate(QUESTION, greedy)
    assert answer.text.startswith("1, 2, 3") and answer.finish_reason == "stop"
    assert answer.prompt_tokens == qwen.count_prompt_tokens(QUESTION)
    items = list(qwen.stream(QUESTION, greedy))
    assert "".join(i.text for i in items if isinstance(i, StreamDelta)) == answer.text and items[-1] == answer
    assert len([i for i in items if isinstance(i, StreamDelta)]) > 5, "the answer came in one piece, not per token"
    cut = qwen.generate(QUESTION, GenerationParams(temperature=0, max_tokens=40, stop=["5"]))
    assert cut.text == answer.text[: answer.text.index("5")] and cut.finish_reason == "stop"
    short = qwen.generate(QUESTION, GenerationParams(temperature=0, max_tokens=3))
    assert (short.completion_tokens, short.finish_reason) == (3, "length")
    sampled = GenerationParams(temperature=1.0, top_p=0.9, max_tokens=24, seed=11)
    assert qwen.generate(QUESTION, sampled) == qwen.generate(QUESTION, sampled)
    assert registry_for(tmp_path, str(require_qwen_05b())).chat().engine is qwen.engine, "loaded twice in one process"


@pytest.mark.slow
def test_a_cancel_while_llama_cpp_reads_a_long_prompt_frees_it(qwen):
    long_prompt = [{"role": "user", "content": "PostgreSQL stores vectors with pgvector. " * 300 + "Summarise."}]
    cancel, outcome = threading.Event(), []

    def consume():
        try:
            list(qwen.stream(long_prompt, GenerationParams(max_tokens=50), cancel))
        except GenerationCancelled as exc:
            outcome.append(exc)

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert wait_until(lambda: qwen.engine.busy_slots() == 1, 60), "llama.cpp never started the request"
    cancel.set()  # before any token: llama.cpp is still reading the ~2,700-token prompt
    consumer.join(10)
    assert outcome, "the consumer did not see the cancel"
    # Every 2 s: llama.cpp looks at a waiting client's connection when its 1-s wait for a result times out,
    # and each /slots answer wakes that wait early; asking faster than once a second hides the disconnect.
    assert wait_until(lambda: qwen.engine.busy_slots() == 0, 90, every=2), "llama.cpp kept working after the cancel"
    assert qwen.generating == 0


def test_a_file_llama_cpp_refuses_is_a_clear_503_naming_the_model(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    registry = registry_for(tmp_path, str(broken))
    with pytest.raises(ServiceUnavailable, match=r"llama.cpp cannot load chat model 'qwen' from .*broken.gguf") as info:
        registry.chat()
    assert info.value.code == "model_unavailable" and info.value.status_code == 503
    status = registry.chat_status()
    assert status["state"] == "unavailable" and "cannot load chat model 'qwen'" in status["message"]
