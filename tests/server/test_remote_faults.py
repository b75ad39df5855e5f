"""A remote chat provider failing under kb's app chat and /v1/chat/completions, over real HTTP end to end.

The provider (`tests.remote_support.FakeProvider`) times out, answers 500, answers garbage (an HTML
page, wrong-shaped events, cut-off JSON) or breaks off halfway (the connection drops, or it goes silent).
The client always gets a gateway error naming the provider and the problem (504 when it went silent,
502 otherwise, never 500), as an HTTP status when nothing was sent yet and as an error event once the stream had begun. A failed turn
is never stored: kb keeps neither the question nor part of an answer, so the chat holds complete
turns only and the same question can simply be asked again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest
from sqlalchemy import text

from kb.config import Settings
from kb.http.app import create_app
from kb.runtime import Runtime
from kb.testing import HashEmbedder
from tests.answer_data import PARIS, add_knowledge, make_app
from tests.helpers import ROOT, ROOT_KEY, LiveServer, free_port
from tests.remote_support import ANSWER_PIECES, MIDWAY_MODES, FakeProvider
from tests.server.support import sdk

QUESTION = [{"role": "user", "content": "When was the Eiffel Tower built?"}]
FULL_ANSWER = "".join(ANSWER_PIECES)
TIMED_OUT = {"hang", "stall"}  # the provider went silent: 504; every other fault is a bad answer: 502
TIMEOUT_SECONDS = 1.0
# What the error message must say for each way of failing.
PROBLEM = {
    "hang": "timed out",
    "error500": "HTTP 500",
    "garbage": "text/html instead of an event stream",
    "wrong_shape": "malformed chunk",
    "broken_sse": "not JSON",
    "drop": "without finishing the answer|broke off",
    "stall": "broke off the answer after .* timed out",
}
BEFORE_ANSWERING = [mode for mode in PROBLEM if mode not in MIDWAY_MODES]
# A whole (not streamed) answer broken off midway is reported like a failure to answer at all.
WHOLE_ANSWER_PROBLEM = {**PROBLEM, "drop": "without finishing the answer", "stall": "timed out"}


def gateway_status(mode: str) -> int:
    return 504 if mode in TIMED_OUT else 502


@dataclass
class Served:
    url: str
    client: openai.OpenAI
    faulty: FakeProvider
    healthy: FakeProvider
    rt: Runtime

    def messages_of(self, chat_id: str) -> list[tuple[str, str]] | None:
        """The stored chat as (role, content) pairs; None when there is no such chat."""
        response = httpx.get(f"{self.url}/api/chats/{chat_id}", headers=ROOT)
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return [(m["role"], m["content"]) for m in response.json()["messages"]]

    def logged_statuses(self) -> list[int]:
        with self.rt.db.session() as session:
            rows = session.execute(text("SELECT status FROM usage_log WHERE endpoint = '/v1/chat/completions'")).all()
        return [row.status for row in rows]


def remote_chat(name: str, *urls: str) -> dict:
    providers = [{"base_url": url, "priority": index} for index, url in enumerate(urls)]
    return {
        "name": name,
        "backend": "remote",
        "timeout_seconds": TIMEOUT_SECONDS,
        "failure_threshold": 100,
        "providers": providers,
    }


@pytest.fixture
def served(tmp_path, database_url, db) -> Iterator[Served]:
    """kb on a live port with two remote chat models: `solo` (the faulty provider) and `pair` (faulty, then healthy);
    an app of each name answers from a small dataset with that model."""
    faulty, healthy = FakeProvider(), FakeProvider()
    models_file = tmp_path / "models.json"
    models_file.write_text(
        json.dumps(
            {
                "chat": [
                    remote_chat("solo", faulty.base_url),
                    remote_chat("pair", faulty.base_url, healthy.base_url),
                ]
            }
        )
    )
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        database_url=database_url,
        root_key=ROOT_KEY,
        models_file=models_file,
        embed_model="hash",
        chat_model="solo",
        rate_limit_chat_per_minute=0,
    )
    app = create_app(settings, db=db)
    rt = Runtime(settings, db, app.state.registry)
    rt.registry.register_embedder(HashEmbedder(name="hash"))
    dataset_id = add_knowledge(rt, "paris", PARIS)
    for model in ("solo", "pair"):
        make_app(rt, model, [dataset_id], chat_model=model)
    with LiveServer(app, free_port()) as server:
        client = sdk(server.url)
        yield Served(server.url, client, faulty, healthy, rt)
        client.close()
    for model in ("solo", "pair"):
        rt.registry.chat(model).pool.client.close()
    faulty.close()
    healthy.close()


def assert_names_the_problem(message: str, served: Served, mode: str, problems: dict[str, str] = PROBLEM) -> None:
    assert served.faulty.base_url in message, message
    assert re.search(problems[mode], message), message


def stream_text(served: Served, model: str, chat_id: str | None = None) -> str:
    """Stream an answer and return its text; raises what the SDK raises for an error status or event."""
    extra = {"chatId": chat_id} if chat_id else None
    chunks = served.client.chat.completions.create(model=model, messages=QUESTION, stream=True, extra_body=extra)
    received: list[str] = []
    try:
        for chunk in chunks:
            received.extend(choice.delta.content or "" for choice in chunk.choices)
    except openai.APIError as exc:
        exc.received = "".join(received)  # what the client saw before the error
        raise
    return "".join(received)


@pytest.mark.parametrize("mode", list(PROBLEM))
def test_a_failing_provider_is_a_gateway_error_and_the_app_chat_stores_neither_the_question_nor_a_partial_answer(
    served, mode
):
    served.faulty.mode = mode
    with pytest.raises(openai.APIStatusError) as info:
        served.client.chat.completions.create(model="app:solo", messages=QUESTION, extra_body={"chatId": f"c-{mode}"})
    assert info.value.status_code == gateway_status(mode)
    assert info.value.body["type"] == "server_error"
    assert_names_the_problem(info.value.message, served, mode, WHOLE_ANSWER_PROBLEM)
    assert served.messages_of(f"c-{mode}") is None, "a failed first turn leaves no chat behind"

    served.faulty.mode = "ok"
    answer = served.client.chat.completions.create(
        model="app:solo", messages=QUESTION, extra_body={"chatId": f"c-{mode}"}
    )
    assert answer.choices[0].message.content == FULL_ANSWER
    assert served.messages_of(f"c-{mode}") == [("user", QUESTION[0]["content"]), ("assistant", FULL_ANSWER)]
    assert 500 not in served.logged_statuses()


@pytest.mark.parametrize("mode", list(PROBLEM))
def test_a_streamed_app_answer_from_a_failing_provider_ends_in_an_error_never_a_silently_short_answer(served, mode):
    served.faulty.mode = mode
    with pytest.raises(openai.APIError) as info:
        stream_text(served, "app:solo", chat_id=f"s-{mode}")
    assert_names_the_problem(info.value.message, served, mode)
    if mode in MIDWAY_MODES:
        assert info.value.received == "".join(ANSWER_PIECES[:2]), "the part sent before the break, then the error event"
    else:
        assert isinstance(info.value, openai.APIStatusError) and info.value.status_code == gateway_status(mode), (
            "nothing was sent yet, so the failure is the response's status"
        )
    assert served.messages_of(f"s-{mode}") is None
    assert 500 not in served.logged_statuses()


@pytest.mark.parametrize("mode", list(PROBLEM))
def test_a_configured_remote_model_reports_each_provider_fault_as_a_gateway_error_streamed_or_not(served, mode):
    served.faulty.mode = mode
    with pytest.raises(openai.APIStatusError) as info:
        served.client.chat.completions.create(model="solo", messages=QUESTION)
    assert info.value.status_code == gateway_status(mode)
    assert_names_the_problem(info.value.message, served, mode, WHOLE_ANSWER_PROBLEM)
    with pytest.raises(openai.APIError) as streamed:
        stream_text(served, "solo")
    assert_names_the_problem(streamed.value.message, served, mode)
    assert 500 not in served.logged_statuses()


@pytest.mark.parametrize("mode", BEFORE_ANSWERING)
def test_the_second_provider_answers_when_the_first_fails_before_answering(served, mode):
    served.faulty.mode = mode
    answer = served.client.chat.completions.create(
        model="app:pair", messages=QUESTION, extra_body={"chatId": f"p-{mode}"}
    )
    assert answer.choices[0].message.content == FULL_ANSWER
    assert served.messages_of(f"p-{mode}") == [("user", QUESTION[0]["content"]), ("assistant", FULL_ANSWER)]
    assert stream_text(served, "app:pair") == FULL_ANSWER
    assert stream_text(served, "pair") == FULL_ANSWER
    assert served.faulty.hits == 3 and served.healthy.hits == 3


@pytest.mark.parametrize("mode", MIDWAY_MODES)
def test_an_answer_broken_off_midway_is_an_error_not_restarted_on_the_second_provider(served, mode):
    """Part of the answer may already be on the client's screen; starting over elsewhere would repeat or contradict it."""
    served.faulty.mode = mode
    with pytest.raises(openai.APIError) as info:
        stream_text(served, "app:pair", chat_id=f"m-{mode}")
    assert_names_the_problem(info.value.message, served, mode)
    assert served.healthy.hits == 0
    assert served.messages_of(f"m-{mode}") is None


@pytest.mark.parametrize("mode", MIDWAY_MODES)
def test_a_whole_answer_broken_off_midway_is_asked_of_the_second_provider(served, mode):
    """Without streaming the client has seen nothing yet, so the next provider can answer from the start."""
    served.faulty.mode = mode
    answer = served.client.chat.completions.create(model="pair", messages=QUESTION)
    assert answer.choices[0].message.content == FULL_ANSWER
    from_app = served.client.chat.completions.create(
        model="app:pair", messages=QUESTION, extra_body={"chatId": f"w-{mode}"}
    )
    assert from_app.choices[0].message.content == FULL_ANSWER
    assert served.messages_of(f"w-{mode}") == [("user", QUESTION[0]["content"]), ("assistant", FULL_ANSWER)]
    assert served.faulty.hits == 2 and served.healthy.hits == 2
    assert served.logged_statuses() == [200, 200]


@pytest.mark.parametrize("mode", ["error500", "drop"])
def test_a_failed_follow_up_leaves_the_earlier_conversation_as_it_was(served, mode):
    served.client.chat.completions.create(model="app:solo", messages=QUESTION, extra_body={"chatId": "kept"})
    before = served.messages_of("kept")
    assert before == [("user", QUESTION[0]["content"]), ("assistant", FULL_ANSWER)]
    served.faulty.mode = mode
    follow_up = [{"role": "user", "content": "Who designed it?"}]
    with pytest.raises(openai.APIStatusError) as info:
        served.client.chat.completions.create(model="app:solo", messages=follow_up, extra_body={"chatId": "kept"})
    assert info.value.status_code == gateway_status(mode)
    assert served.messages_of("kept") == before
