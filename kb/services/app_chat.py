"""App chat on `/v1/chat/completions`: the gateway's `AppChat` seam, answering from an app's knowledge bases.

Extra body fields (FastGPT's names): `chatId` keeps the conversation server-side, `detail: true` adds the
quotes shown to the model and the timings to the response (the last stream chunk when streaming).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from kb.errors import BadRequest
from kb.ml.types import Completion, GenerationParams
from kb.principal import Principal
from kb.runtime import Runtime
from kb.services.answering import FinishedAnswer, app_question, ask_app
from kb.services.apps import ChatSettings, chat_settings_of, find_app, get_app
from kb.services.gateway import APP_MODEL_PREFIX, ChatJob, ChatRequest, StreamItem


def response_extras(finished: FinishedAnswer, detail: bool) -> dict[str, Any]:
    """Fields added to the OpenAI response: the chat and message ids, and with `detail` quotes and timings."""
    answer = finished.answer
    extras: dict[str, Any] = {}
    if finished.turn is not None:
        extras.update(chatId=finished.turn.chat_id, responseMessageId=finished.turn.assistant_message_id)
    if detail:
        extras.update(
            quotes=[quote.to_dict() for quote in answer.quotes],
            cited=answer.cited,
            cited_by=answer.cited_by,
            corrected_citations=[{"written": a, "shown": b} for a, b in answer.corrected_citations],
            timings=answer.timings.to_dict(),
            query=answer.query,
            not_found=answer.not_found,
        )
    return extras


def with_app_settings(request: ChatRequest, settings: ChatSettings) -> GenerationParams:
    """The request's sampling, with the app's temperature and answer length where the caller set none."""
    params = request.params
    if "temperature" not in request.chosen:
        params = replace(params, temperature=settings.temperature)
    if "max_tokens" not in request.chosen and settings.max_tokens:
        params = replace(params, max_tokens=settings.max_tokens)
    return params


def app_chat(rt: Runtime, principal: Principal, app_name: str | None, request: ChatRequest) -> ChatJob:
    """Route a chat request to the key's app (or `app:<name>`); the answer is produced in the gateway's thread."""
    if app_name is not None:
        app = find_app(rt, app_name)
    elif principal.app_id is not None:
        app = get_app(rt, principal.app_id)
    else:
        raise BadRequest(f"name an app as 'model': '{APP_MODEL_PREFIX}<name>'", code="model_not_found")
    principal.require_app(app.id)
    chat_id = request.extra.get("chatId")
    detail = request.extra.get("detail", False)
    if not isinstance(detail, bool):
        raise BadRequest("detail must be true or false")
    asked = app_question(rt, app, request.messages, chat_id)
    params = with_app_settings(request, chat_settings_of(app))
    extras: dict[str, Any] = {}

    def produce(cancel: threading.Event) -> Iterator[StreamItem]:
        answers = ask_app(
            rt,
            app,
            asked,
            params=params,
            api_key_id=principal.key_id,
            source="api",
            cancel=cancel,
            stream=request.stream,
        )
        for item in answers:
            if not isinstance(item, FinishedAnswer):
                yield item
                continue
            extras.update(response_extras(item, detail))  # the gateway reads them once the Completion is out
            answer = item.answer
            yield Completion(
                answer.text, answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.finish_reason
            )

    answer_tokens = request.params.max_tokens or rt.settings.answer_max_tokens
    return ChatJob(f"{APP_MODEL_PREFIX}{app.name}", produce, extras, max_completion_tokens=answer_tokens)
