"""The official OpenAI SDK against a live kb whose chat model is Qwen2.5-Coder-0.5B on llama.cpp: answers, streams, tools."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from kb.config import Settings
from kb.http.app import create_app
from tests.helpers import ROOT_KEY, LiveServer, free_port
from tests.model_files import require_qwen_05b
from tests.server.support import ASK_WEATHER, assert_weather_tool_calls, sdk

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen-gateway")
    broken = root / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    chat = [{"name": "qwen", "path": str(require_qwen_05b())}, {"name": "broken", "path": str(broken)}]
    (root / "models.json").write_text(json.dumps({"chat": chat}))
    return root / "models.json"


def serve(models_file, data_dir, db, database_url: str, default_model: str) -> LiveServer:
    settings = Settings(
        _env_file=None,
        data_dir=data_dir,
        database_url=database_url,
        root_key=ROOT_KEY,
        models_file=models_file,
        chat_model=default_model,
        torch_threads=2,
    )
    return LiveServer(create_app(settings, db=db), free_port())


@pytest.fixture
def server(models_file, tmp_path, database_url, db):
    with serve(models_file, tmp_path / "data", db, database_url, "qwen") as live:
        yield live


def test_the_sdk_gets_answers_and_streams_that_add_up_with_usage(server):
    client = sdk(server.url)
    question = [{"role": "user", "content": "Count from 1 to 5, separated by commas."}]
    whole = client.chat.completions.create(model="qwen", messages=question, temperature=0, max_tokens=20)
    assert whole.choices[0].message.content.startswith("1, 2, 3") and whole.usage.prompt_tokens > 10
    chunks = list(
        client.chat.completions.create(
            model="qwen",
            messages=question,
            temperature=0,
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert chunks[-1].usage.model_dump() == whole.usage.model_dump()


def test_the_sdk_gets_tool_calls_whole_and_streamed(server):
    assert_weather_tool_calls(sdk(server.url), "qwen")


def test_a_model_file_llama_cpp_refuses_is_a_503_naming_it_and_healthz_says_so(models_file, tmp_path, database_url, db):
    with serve(models_file, tmp_path / "data", db, database_url, "broken") as server:
        with pytest.raises(openai.InternalServerError) as info:
            sdk(server.url).chat.completions.create(model="broken", messages=ASK_WEATHER)
        health = httpx.get(f"{server.url}/healthz").json()
    assert info.value.status_code == 503 and "cannot load chat model 'broken'" in info.value.message
    assert health["status"] == "ok", "the rest of kb keeps working"
    chat = health["chat_model"]
    assert chat["state"] == "unavailable" and not chat["available"]
    assert "cannot load chat model 'broken'" in chat["detail"]
