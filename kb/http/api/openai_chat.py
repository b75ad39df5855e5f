"""`POST /v1/chat/completions`: OpenAI's chat API, as one JSON body or as server-sent events."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from kb.errors import KBError
from kb.http.api.errors import error_body
from kb.http.api.openai_schemas import ChatCompletionRequest
from kb.http.api.usage_log import request_usage
from kb.http.deps import PrincipalDep, runtime
from kb.http.security.ratelimit import limit_chat
from kb.ml.types import Completion
from kb.services.gateway import ChatJob, StreamItem, collect_completion, prepare_chat, start_chat
from kb.services.threaded_stream import ThreadedStream
from kb.services.usage import RequestUsage, estimate_tokens, reserve_quota

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["openai"])
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # proxies must not buffer the stream


def usage_body(completion: Completion) -> dict[str, int]:
    return {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.total_tokens,
    }


def completion_body(completion_id: str, created: int, job: ChatJob, completion: Completion) -> dict[str, Any]:
    """OpenAI's `chat.completion` object."""
    message: dict[str, Any] = {"role": "assistant", "content": completion.text}
    if completion.tool_calls:
        message["content"] = completion.text or None
        message["tool_calls"] = completion.tool_calls
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": job.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": completion.finish_reason}],
        "usage": usage_body(completion),
        **job.extras,
    }


def sse(payload: dict[str, Any] | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"data: {data}\n\n"


class ChunkWriter:
    """OpenAI's `chat.completion.chunk` events of one answer."""

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool):
        self.head = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        self.include_usage = include_usage

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        usage = {"usage": None} if self.include_usage else {}
        return sse({**self.head, "choices": [choice], **usage, **extra})

    def ending(self, completion: Completion, extras: dict[str, Any]) -> list[str]:
        """Tool calls (if any), the chunk with finish_reason, and the usage chunk when asked for."""
        events = []
        if completion.tool_calls:
            calls = [{"index": index, **call} for index, call in enumerate(completion.tool_calls)]
            events.append(self.chunk({"tool_calls": calls}))
        events.append(self.chunk({}, completion.finish_reason, **extras))
        if self.include_usage:
            events.append(sse({**self.head, "choices": [], "usage": usage_body(completion)}))
        return events


async def sse_events(
    stream: ThreadedStream[StreamItem],
    first: StreamItem,
    job: ChatJob,
    writer: ChunkWriter,
    usage: RequestUsage,
    is_disconnected: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncIterator[str]:
    """The answer as events; an error midway becomes an error event in OpenAI's shape, then the stream ends.

    A client that leaves (Stop in the web chat, an SDK closing the stream) is noticed while the model
    is still thinking, and the model is cancelled at once: see ThreadedStream."""
    pieces = 0
    finished = False
    try:
        yield writer.chunk({"role": "assistant", "content": ""})
        item = first
        while not isinstance(item, Completion):
            yield writer.chunk({"content": item.text})
            pieces += 1
            item = await stream.next(is_disconnected)
        finished = True
        usage.add_tokens(item.prompt_tokens, item.completion_tokens)
        for event in writer.ending(item, job.extras):
            yield event
    except KBError as exc:
        usage.status = exc.status_code
        yield sse(error_body(exc.message, exc.error_type, exc.code))
    except Exception:
        log.exception("chat stream of model '%s' failed", job.model)
        usage.status = 500
        yield sse(error_body("Internal error while generating the answer.", "server_error", "internal_error"))
    finally:
        stream.close()  # also when the client went away: the model stops at its next token
        if not finished:  # cut short: the prompt and the pieces written so far (about a token each) are charged
            usage.add_tokens(usage.prompt_tokens, pieces + 1)
    yield sse("[DONE]")


@router.post("/chat/completions", dependencies=[Depends(limit_chat)])
async def chat_completions(body: ChatCompletionRequest, request: Request, principal: PrincipalDep):
    """Chat with a configured model (or an app); `stream: true` answers with server-sent events."""
    usage = request_usage(request)
    usage.model = body.model[:200]
    chat_request = body.to_chat_request()
    job = await run_in_threadpool(prepare_chat, runtime(request), principal, chat_request, request.app.state.app_chat)
    usage.model = job.model
    if principal.key_id is not None:
        prompt_estimate = estimate_tokens(chat_request.messages)
        await run_in_threadpool(
            reserve_quota, runtime(request).db, usage, principal.key_id, prompt_estimate, job.max_completion_tokens
        )
    return await respond(request, job, stream=body.stream, include_usage=body.include_usage, usage=usage)


async def respond(request: Request, job: ChatJob, *, stream: bool, include_usage: bool, usage: RequestUsage):
    """Run a prepared chat job and answer with its whole body or, streaming, its server-sent events."""
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    started = start_chat(job)
    if not stream:
        completion = await collect_completion(started, request.is_disconnected)
        usage.add_tokens(completion.prompt_tokens, completion.completion_tokens)
        return JSONResponse(completion_body(completion_id, created, job, completion))
    try:
        # Wait for the first piece before sending headers, so a refused prompt or a dead provider is a plain HTTP error.
        first = await started.next(request.is_disconnected)
    except BaseException:
        started.close()
        raise
    writer = ChunkWriter(completion_id, created, job.model, include_usage)
    return StreamingResponse(
        sse_events(started, first, job, writer, usage, request.is_disconnected),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )
