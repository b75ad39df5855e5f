"""The gateway over a real transformers model: a tiny random Qwen2 with a ChatML template, built offline."""

from __future__ import annotations

import json
import os
import shutil

import openai
import pytest

from kb.config import Settings
from kb.http.app import create_app
from kb.testing import build_tiny_qwen
from tests.helpers import ROOT_KEY, LiveServer, free_port
from tests.server.support import sdk

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.slow

QUESTION = [{"role": "system", "content": "Answer using the quotes."}, {"role": "user", "content": "What is pgvector?"}]
TOOLS = [
    {"type": "function", "function": {"name": "search", "description": "Search", "parameters": {"type": "object"}}}
]
CHATML_WITHOUT_TOOLS = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The model folder, a copy whose template knows no tools, and a models file naming both."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("tiny-gateway")
    folder = build_tiny_qwen(root / "tiny-qwen")
    plain = root / "tiny-plain"
    shutil.copytree(folder, plain)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = CHATML_WITHOUT_TOOLS
    tokenizer.save_pretrained(plain)
    models_file = root / "models.json"
    models_file.write_text(
        json.dumps({"chat": [{"name": "tiny", "path": folder}, {"name": "tiny-plain", "path": str(plain)}]})
    )
    return {"root": root, "models_file": models_file, "tokenizer": AutoTokenizer.from_pretrained(folder)}


@pytest.fixture
def client(tiny, database_url, db):
    # One data dir for the module: the registry then loads each model once, not once per test.
    settings = Settings(
        _env_file=None,
        data_dir=tiny["root"] / "data",
        database_url=database_url,
        root_key=ROOT_KEY,
        models_file=tiny["models_file"],
        torch_threads=2,
    )
    with LiveServer(create_app(settings, db=db), free_port()) as server:
        yield sdk(server.url)


def prompt_tokens(tokenizer, messages, tools=None) -> int:
    prompt = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
    return len(tokenizer(prompt, add_special_tokens=False)["input_ids"])


def greedy(client, **extra):
    return client.chat.completions.create(model="tiny", messages=QUESTION, temperature=0, **extra)


def test_usage_counts_are_the_tokenizers_counts(client, tiny):
    response = greedy(client, max_tokens=12)
    assert response.usage.prompt_tokens == prompt_tokens(tiny["tokenizer"], QUESTION)
    if response.choices[0].finish_reason == "length":
        assert response.usage.completion_tokens == 12
    else:  # the end-of-turn token came first; it counts as generated
        assert response.usage.completion_tokens < 12
    assert len(tiny["tokenizer"](response.choices[0].message.content)["input_ids"]) <= response.usage.completion_tokens


def test_greedy_answers_repeat_and_the_stream_adds_up_to_them(client):
    first, second = greedy(client, max_tokens=16), greedy(client, max_tokens=16)
    assert first.choices[0].message.content == second.choices[0].message.content
    chunks = list(greedy(client, max_tokens=16, stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == first.choices[0].message.content
    assert chunks[-1].usage.model_dump() == first.usage.model_dump()


def test_a_stop_string_across_a_chunk_boundary_never_leaks(client):
    pieces = [c.choices[0].delta.content for c in greedy(client, max_tokens=30, stream=True) if c.choices]
    pieces = [p for p in pieces if p]
    full = "".join(pieces)
    stop, cut_at = None, 0
    for i in range(1, len(pieces)):
        boundary = len("".join(pieces[:i]))
        candidate = full[boundary - 1 : boundary + 1]  # last character of one chunk + first of the next
        if full.find(candidate) == boundary - 1:
            stop, cut_at = candidate, boundary - 1
            break
    assert stop is not None, f"no boundary-straddling stop string found in {pieces!r}"

    streamed = [
        c.choices[0].delta.content or "" for c in greedy(client, max_tokens=30, stream=True, stop=[stop]) if c.choices
    ]
    assert "".join(streamed) == full[:cut_at]
    assert not any(stop in piece for piece in streamed)
    whole = greedy(client, max_tokens=30, stop=stop)
    assert whole.choices[0].message.content == full[:cut_at] and whole.choices[0].finish_reason == "stop"


def test_tools_reach_the_chat_template(client, tiny):
    with_tools = greedy(client, max_tokens=2, tools=TOOLS)
    assert with_tools.usage.prompt_tokens == prompt_tokens(tiny["tokenizer"], QUESTION, TOOLS)
    assert with_tools.usage.prompt_tokens > prompt_tokens(tiny["tokenizer"], QUESTION)


def test_tools_for_a_template_without_them_are_a_clear_400(client):
    with pytest.raises(openai.BadRequestError, match="does not support tools"):
        client.chat.completions.create(model="tiny-plain", messages=QUESTION, tools=TOOLS)
    plain = client.chat.completions.create(model="tiny-plain", messages=QUESTION, max_tokens=3)
    assert plain.usage.completion_tokens <= 3


def test_a_prompt_beyond_the_context_is_refused_with_its_size(client, tiny):
    messages = [{"role": "user", "content": "PostgreSQL keeps vectors in pgvector. " * 100}]
    size = prompt_tokens(tiny["tokenizer"], messages)
    assert size > 512
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=messages)
    assert info.value.code == "context_length_exceeded"
    assert f"the prompt is {size} tokens" in info.value.message and "context of 512 tokens" in info.value.message
