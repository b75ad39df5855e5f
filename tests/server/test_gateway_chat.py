"""`/v1/chat/completions` through the official OpenAI SDK against a running kb, with deterministic fake models."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from sqlalchemy import text

from kb.testing import EchoChatModel
from tests.helpers import ROOT
from tests.server.support import QUESTION, BreakingChatModel, EndlessChatModel, sdk, wait_until

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the knowledge base",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def models(app) -> dict[str, EchoChatModel]:
    fakes = {
        "echo": EchoChatModel("echo"),
        "echo-short": EchoChatModel("echo-short", context_length=24, supports_tools=False),
        "breaking": BreakingChatModel("breaking"),
        "endless": EndlessChatModel("endless"),
    }
    for model in fakes.values():
        app.state.registry.register_chat(model)
    return fakes


@pytest.fixture
def client(models, live_server) -> openai.OpenAI:
    return sdk(live_server.url)


def usage_rows(db) -> list[dict]:
    with db.session() as session:
        rows = session.execute(text("SELECT * FROM usage_log ORDER BY id")).mappings().all()
    return [dict(row) for row in rows]


def test_plain_chat_answers_with_the_models_real_token_counts(client, models):
    response = client.chat.completions.create(model="echo", messages=QUESTION)
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Echo: What is pgvector?"
    assert choice.finish_reason == "stop"
    assert response.model == "echo" and response.id.startswith("chatcmpl-")
    assert response.usage.prompt_tokens == models["echo"].count_prompt_tokens(QUESTION)
    assert response.usage.completion_tokens == 4  # "Echo:", " What", " is", " pgvector?"
    assert response.usage.total_tokens == response.usage.prompt_tokens + 4


def test_stream_sends_pieces_then_the_finish_reason_then_usage_last(client, models):
    stream = client.chat.completions.create(
        model="echo", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == "Echo: What is pgvector?"
    assert len(pieces) == 4, "each piece is sent as soon as the model yields it"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert chunks[-1].usage.prompt_tokens == models["echo"].count_prompt_tokens(QUESTION)
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_include_usage_sends_no_usage(client):
    chunks = list(client.chat.completions.create(model="echo", messages=QUESTION, stream=True))
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_the_raw_stream_is_server_sent_events_ending_with_done(live_server, models):
    body = {"model": "echo", "messages": QUESTION, "stream": True}
    with httpx.stream("POST", f"{live_server.url}/v1/chat/completions", json=body, headers=ROOT) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = [block for block in raw.split("\n\n") if block]
    assert all(event.startswith("data: ") for event in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] == "stop"


def test_stop_string_spanning_two_pieces_never_reaches_the_client(client):
    # "is pg" starts in the piece " is" and ends in " pgvector?"
    streamed = client.chat.completions.create(model="echo", messages=QUESTION, stream=True, stop=["is pg"])
    pieces = [c.choices[0].delta.content or "" for c in streamed if c.choices]
    whole = client.chat.completions.create(model="echo", messages=QUESTION, stop="is pg")
    assert "".join(pieces) == whole.choices[0].message.content == "Echo: What "
    assert whole.choices[0].finish_reason == "stop"


def test_max_tokens_cuts_the_answer_with_finish_reason_length(client):
    response = client.chat.completions.create(model="echo", messages=QUESTION, max_tokens=2)
    assert response.choices[0].message.content == "Echo: What"
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 2


def test_more_than_one_choice_is_refused(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="echo", messages=QUESTION, n=2)
    assert info.value.code == "unsupported_parameter"
    assert "n=2 is not supported" in info.value.message


def test_unknown_model_is_a_400_in_openais_error_shape(client, live_server):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-9", messages=QUESTION)
    assert info.value.code == "model_not_found"
    assert "echo" in info.value.message, "the error names the models that exist"
    raw = httpx.post(
        f"{live_server.url}/v1/chat/completions", json={"model": "gpt-9", "messages": QUESTION}, headers=ROOT
    )
    assert raw.status_code == 400
    assert set(raw.json()) == {"error"} and set(raw.json()["error"]) == {"message", "type", "code"}
    assert raw.json()["error"]["type"] == "invalid_request_error"


def test_temperature_outside_zero_to_two_is_refused(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="echo", messages=QUESTION, temperature=2.5)
    assert "temperature" in info.value.message


def test_malformed_json_body_is_a_400(live_server, models):
    response = httpx.post(
        f"{live_server.url}/v1/chat/completions",
        content=b'{"model": "echo", "messages": [',
        headers={**ROOT, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_empty_messages_are_refused(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="echo", messages=[])
    assert info.value.code == "empty_messages"


def test_a_prompt_longer_than_the_context_is_refused_with_both_counts(client, models):
    messages = [{"role": "user", "content": "pgvector " * 40}]
    prompt_tokens = models["echo-short"].count_prompt_tokens(messages)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="echo-short", messages=messages, stream=True)
    assert info.value.code == "context_length_exceeded"
    assert f"the prompt is {prompt_tokens} tokens" in info.value.message
    assert "context of 24 tokens" in info.value.message


def test_text_parts_and_every_role_are_accepted(client, models):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Find it"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": '{"query": "x"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "nothing"},
        {"role": "user", "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "pgvector?"}]},
    ]
    response = client.chat.completions.create(model="echo", messages=messages)
    assert response.choices[0].message.content == "Echo: What is pgvector?"
    assert models["echo"].calls[-1][0] == {"role": "system", "content": "Be brief."}


def test_image_parts_are_refused_clearly(client):
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]
    with pytest.raises(openai.BadRequestError, match="only text parts are supported"):
        client.chat.completions.create(model="echo", messages=messages)


def test_unknown_extra_fields_are_tolerated(client):
    response = client.chat.completions.create(
        model="echo", messages=QUESTION, seed=3, top_p=0.5, extra_body={"chatId": "abc", "frequency_penalty": 0.1}
    )
    assert response.choices[0].message.content == "Echo: What is pgvector?"


def test_a_tool_call_comes_back_as_tool_calls(client):
    messages = [{"role": "user", "content": "please search for pgvector"}]
    response = client.chat.completions.create(model="echo", messages=messages, tools=TOOLS)
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "search"
    assert json.loads(call.function.arguments) == {"query": "please search for pgvector"}

    chunks = list(client.chat.completions.create(model="echo", messages=messages, tools=TOOLS, stream=True))
    streamed = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert streamed[0][0].function.name == "search" and streamed[0][0].index == 0
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert not any("<tool_call>" in (c.choices[0].delta.content or "") for c in chunks if c.choices)


def test_tool_choice_none_answers_without_tools(client):
    messages = [{"role": "user", "content": "please search for pgvector"}]
    response = client.chat.completions.create(model="echo", messages=messages, tools=TOOLS, tool_choice="none")
    assert response.choices[0].message.content == "Echo: please search for pgvector"


def test_tools_for_a_model_without_tool_support_are_a_400(client):
    with pytest.raises(openai.BadRequestError, match="does not support tools"):
        client.chat.completions.create(model="echo-short", messages=QUESTION, tools=TOOLS)


def test_an_error_midway_through_a_stream_arrives_as_an_error_event(client, live_server, db):
    stream = client.chat.completions.create(model="breaking", messages=QUESTION, stream=True)
    received = []
    with pytest.raises(openai.APIError, match="broke off the answer"):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Half an"

    body = {"model": "breaking", "messages": QUESTION, "stream": True}
    with httpx.stream("POST", f"{live_server.url}/v1/chat/completions", json=body, headers=ROOT) as response:
        events = [e for e in response.read().decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][6:]) == {
        "error": {"message": "the provider broke off the answer", "type": "server_error", "code": "upstream_error"}
    }
    # The SDK hangs up at the error event; the server notices and logs that first request when it next writes.
    assert wait_until(lambda: [row["status"] for row in usage_rows(db) if row["model"] == "breaking"] == [502, 502])


def test_a_client_that_leaves_mid_stream_cancels_the_generation(live_server, models, db):
    endless = models["endless"]
    body = {"model": "endless", "messages": QUESTION, "stream": True}
    with httpx.stream("POST", f"{live_server.url}/v1/chat/completions", json=body, headers=ROOT) as response:
        for line in response.iter_lines():
            if '"content":" 3"' in line:
                break  # leave after a few pieces
    assert endless.cancelled.wait(20), "the model was never told to stop"
    assert wait_until(lambda: [r["status"] for r in usage_rows(db) if r["model"] == "endless"] == [499])


def test_a_client_that_gives_up_on_a_plain_answer_cancels_the_generation(live_server, models, db):
    endless = models["endless"]
    body = {"model": "endless", "messages": QUESTION}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{live_server.url}/v1/chat/completions", json=body, headers=ROOT, timeout=httpx.Timeout(10, read=1))
    assert endless.started.is_set()
    assert endless.cancelled.wait(20), "the model was never told to stop"
    assert wait_until(lambda: [r["status"] for r in usage_rows(db) if r["model"] == "endless"] == [499])


def test_every_authenticated_v1_request_is_logged_failures_included_but_not_keyless_ones(client, live_server, db):
    client.chat.completions.create(model="echo", messages=QUESTION)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-9", messages=QUESTION)
    assert httpx.get(f"{live_server.url}/v1/models").status_code == 401  # no key: refused, and not logged (#17.11)
    rows = usage_rows(db)
    assert [(r["endpoint"], r["model"], r["status"]) for r in rows] == [
        ("/v1/chat/completions", "echo", 200),
        ("/v1/chat/completions", "gpt-9", 400),
    ]
    assert rows[0]["prompt_tokens"] > 0 and rows[0]["completion_tokens"] == 4
    assert rows[1]["prompt_tokens"] == rows[1]["completion_tokens"] == 0


def test_models_lists_the_registered_and_configured_models(client, settings):
    ids = [model.id for model in client.models.list()]
    assert {"echo", "echo-short", settings.chat_model, settings.embed_model} <= set(ids)
