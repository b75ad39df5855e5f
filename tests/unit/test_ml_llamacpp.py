"""The llama.cpp chat model's own logic over a scripted fake server: streaming, stops, errors, slots, cancellation."""

from __future__ import annotations

import threading
import time

import pytest

from kb.errors import BadRequest
from kb.ml.llamacpp import LlamaCppChatModel
from kb.ml.types import Completion, GenerationCancelled, GenerationParams, StreamDelta

QUESTION = [{"role": "user", "content": "Count to five"}]
TOOLS = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]


def token_chunk(text: str) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def ending(finish_reason: str, prompt_tokens: int, completion_tokens: int) -> list[dict]:
    return [
        {"choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}]},
        {"choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}},
    ]


class FakeStream:
    """One request: yields its chunks, optionally blocking first (a queue or a prefill) until released or closed."""

    def __init__(self, chunks: list[dict], hold: threading.Event | None):
        self._chunks, self._hold = chunks, hold
        self.closed = threading.Event()

    def chunks(self):
        for chunk in self._chunks:
            while self._hold is not None and not self._hold.is_set():
                if self.closed.wait(0.01):
                    return  # the connection went away: llama.cpp drops the task
            if self.closed.is_set():
                return
            yield chunk

    def close(self) -> None:
        self.closed.set()


class FakeEngine:
    """Tokenizer = one token per word, template = the messages joined; answers are scripted per request."""

    chat_template = "{% if tools %}...{% endif %}"

    def __init__(self, chunks: list[dict], hold: threading.Event | None = None):
        self.script, self.hold = chunks, hold
        self.bodies: list[dict] = []
        self.streams: list[FakeStream] = []

    def post(self, path: str, body: dict) -> dict:
        if path == "/apply-template":
            return {
                "prompt": " ".join(m["content"] for m in body["messages"]) + (" TOOLS" if body.get("tools") else "")
            }
        return {"tokens": body["content"].split()}

    def open_chat(self, body: dict) -> FakeStream:
        self.bodies.append(body)
        self.streams.append(FakeStream(self.script, self.hold))
        return self.streams[-1]


def model_over(engine: FakeEngine, context: int = 64, slots: int = 1) -> LlamaCppChatModel:
    return LlamaCppChatModel("fake", engine, context, slots)


def wait_until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.01)
    return condition()


def test_pieces_stream_then_a_completion_with_llama_cpps_usage():
    engine = FakeEngine([token_chunk("1,"), token_chunk(" 2"), *ending("length", 3, 2)])
    items = list(model_over(engine).stream(QUESTION, GenerationParams(max_tokens=2, seed=7, stop=["x"])))
    assert items == [StreamDelta("1,"), StreamDelta(" 2"), Completion("1, 2", 3, 2, "length")]
    body = engine.bodies[0]
    assert (body["max_tokens"], body["seed"], body["stop"], body["cache_prompt"]) == (2, 7, ["x"], True)


def test_the_answer_budget_is_what_the_context_leaves_and_a_full_context_is_a_400_naming_it():
    engine = FakeEngine(ending("stop", 3, 0))
    model_over(engine, context=10).generate(QUESTION, GenerationParams())
    assert engine.bodies[0]["max_tokens"] == 7
    with pytest.raises(BadRequest, match="the prompt is 3 tokens but model 'fake' has a context of 3 tokens"):
        model_over(engine, context=3).generate(QUESTION, GenerationParams())


def test_llama_cpps_context_error_is_a_400_naming_the_limit():
    error = {"error": {"code": 400, "type": "exceed_context_size_error", "n_prompt_tokens": 5030, "n_ctx": 4096}}
    with pytest.raises(BadRequest, match="5030 tokens .* context of 4096 tokens") as info:
        model_over(FakeEngine([error])).generate(QUESTION, GenerationParams())
    assert info.value.code == "context_length_exceeded"


def test_a_stop_string_split_across_tokens_never_leaks_and_the_tokens_are_counted_here():
    engine = FakeEngine([token_chunk("one EN"), token_chunk("D two"), token_chunk(" three"), *ending("stop", 3, 3)])
    items = list(model_over(engine).stream(QUESTION, GenerationParams(stop=["END"])))
    assert "".join(i.text for i in items if isinstance(i, StreamDelta)) == "one "
    assert items[-1] == Completion("one ", 3, 2, "stop")  # kb cut it first: llama.cpp's usage never came
    assert engine.streams[0].closed.is_set()


def test_tool_calls_parsed_by_llama_cpp_are_folded_into_the_completion():
    calls = [{"index": 0, "id": "c1", "function": {"name": "search", "arguments": '{"q":'}}]
    more = [{"index": 0, "function": {"arguments": ' "pg"}'}}]
    chunks = [{"choices": [{"delta": {"tool_calls": c}}]} for c in (calls, more)]
    completion = model_over(FakeEngine([*chunks, *ending("tool_calls", 4, 9)])).generate(
        QUESTION, GenerationParams(tools=TOOLS)
    )
    assert completion.finish_reason == "tool_calls" and completion.text == ""
    assert completion.tool_calls == [
        {"id": "c1", "type": "function", "function": {"name": "search", "arguments": '{"q": "pg"}'}}
    ]


def test_cancel_while_llama_cpp_reads_the_prompt_closes_the_connection_and_gives_the_slot_back():
    engine, cancel = FakeEngine([token_chunk("late"), *ending("stop", 3, 1)], hold=threading.Event()), threading.Event()
    model = model_over(engine)
    outcome: list[BaseException] = []

    def consume():
        try:
            list(model.stream(QUESTION, GenerationParams(), cancel))
        except GenerationCancelled as exc:
            outcome.append(exc)

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert wait_until(lambda: model.generating == 1 and engine.streams)
    cancel.set()  # no token has come: the model is still "reading the prompt"
    consumer.join(5)
    assert outcome and engine.streams[0].closed.is_set()
    assert wait_until(lambda: model.generating == 0), "the slot stayed taken after the cancel"


def test_a_request_waiting_for_the_only_slot_can_leave_without_ever_reaching_llama_cpp():
    engine = FakeEngine([token_chunk("a"), *ending("stop", 3, 1)], hold=threading.Event())
    model, cancel = model_over(engine, slots=1), threading.Event()
    first = model.stream(QUESTION, GenerationParams())
    first_items: list = []
    reader = threading.Thread(target=lambda: first_items.extend(first))
    reader.start()
    assert wait_until(lambda: model.generating == 1)
    second_failed: list[BaseException] = []

    def wait_then_leave():
        try:
            list(model.stream(QUESTION, GenerationParams(), cancel))
        except GenerationCancelled as exc:
            second_failed.append(exc)

    waiter = threading.Thread(target=wait_then_leave)
    waiter.start()
    cancel.set()
    waiter.join(5)
    assert second_failed and "waiting for the model" in str(second_failed[0]) and len(engine.streams) == 1
    engine.hold.set()
    reader.join(5)
    assert first_items[-1].text == "a" and model.generating == 0


def test_closing_the_stream_midway_cancels_the_task_in_llama_cpp():
    engine = FakeEngine([token_chunk("a"), token_chunk("b"), *ending("stop", 3, 2)], hold=threading.Event())
    model = model_over(engine)
    stream = model.stream(QUESTION, GenerationParams())
    engine.hold.set()
    assert next(stream) == StreamDelta("a")
    stream.close()  # what the gateway does when its client goes away
    assert engine.streams[0].closed.is_set()
    assert wait_until(lambda: model.generating == 0)


def test_tools_for_a_template_without_them_are_refused():
    engine = FakeEngine(ending("stop", 3, 0))
    engine.chat_template = "{{ messages }}"
    with pytest.raises(BadRequest, match="does not support tools"):
        model_over(engine).generate(QUESTION, GenerationParams(tools=TOOLS))
