"""Helpers for the gateway tests: the official OpenAI client, and chat models that misbehave on purpose."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import openai

from kb.errors import UpstreamError
from kb.ml.types import Completion, GenerationCancelled, GenerationParams, StreamDelta, final_completion
from kb.testing import EchoChatModel
from tests.helpers import ROOT_KEY

QUESTION = [{"role": "user", "content": "What is pgvector?"}]
WEATHER = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]


def sdk(url: str, key: str = ROOT_KEY) -> openai.OpenAI:
    """The official client against a running kb; no retries, so every status reaches the test.

    Without keep-alive no socket outlives its response, so none is left for a later test's garbage
    collection to warn about (warnings are errors).
    """
    http_client = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=60)
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, http_client=http_client)


def wait_until(condition, timeout: float = 20.0) -> bool:
    """Poll `condition` until it holds (for effects that land after the client has its answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


class BreakingChatModel(EchoChatModel):
    """Sends one piece of its answer, then fails the way a remote provider breaking off would."""

    def stream(
        self, messages: list[dict], params: GenerationParams, cancel: threading.Event | None = None
    ) -> Iterator[StreamDelta | Completion]:
        yield StreamDelta("Half an")
        raise UpstreamError("the provider broke off the answer")


class EndlessChatModel(EchoChatModel):
    """Streams numbers until cancelled; remembers that it was."""

    def __init__(self, name: str):
        super().__init__(name)
        self.started = threading.Event()
        self.cancelled = threading.Event()

    def stream(
        self, messages: list[dict], params: GenerationParams, cancel: threading.Event | None = None
    ) -> Iterator[StreamDelta | Completion]:
        assert cancel is not None, "the gateway must hand every generation a cancel event"
        self.started.set()
        for number in range(100_000):
            if cancel.wait(0.02):
                self.cancelled.set()
                raise GenerationCancelled("generation cancelled")
            yield StreamDelta(f" {number}")
        yield Completion("", 1, 1, "length")

    def generate(
        self, messages: list[dict], params: GenerationParams, cancel: threading.Event | None = None
    ) -> Completion:
        return final_completion(self.stream(messages, params, cancel))


def assert_weather_tool_calls(client: openai.OpenAI, model: str) -> None:
    """The model asked for Paris's weather calls get_weather with {"city": "Paris"}, whole and streamed, and
    the call's JSON never leaks into the text."""
    whole = client.chat.completions.create(
        model=model, messages=ASK_WEATHER, tools=WEATHER, temperature=0, max_tokens=60
    )
    choice = whole.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    streamed = list(
        client.chat.completions.create(
            model=model, messages=ASK_WEATHER, tools=WEATHER, temperature=0, max_tokens=60, stream=True
        )
    )
    calls = [t for c in streamed if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert [t.function.name for t in calls] == ["get_weather"] and json.loads(calls[0].function.arguments) == {
        "city": "Paris"
    }
    assert streamed[-1].choices[0].finish_reason == "tool_calls"
    assert not "".join(c.choices[0].delta.content or "" for c in streamed if c.choices), "the JSON leaked as text"
