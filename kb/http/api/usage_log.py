"""Logs every authenticated `/v1` request (successes, refusals, failures, clients that left) to the usage log.

A request that names no known key writes nothing: otherwise anyone could grow the table without
credentials. Rows older than `KB_USAGE_RETENTION_DAYS` are pruned by the worker's housekeeping.
"""

from __future__ import annotations

import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kb.services.usage import CLIENT_CLOSED, RequestUsage, log_request_usage

LOGGED_PREFIX = "/v1/"


def request_usage(request: Request) -> RequestUsage:
    """The usage record of this request, for the route to fill in (a throwaway one outside /v1)."""
    usage = getattr(request.state, "usage", None)
    if usage is None:
        usage = RequestUsage(endpoint=request.url.path)
        request.state.usage = usage
    return usage


class UsageLogMiddleware:
    """Writes the usage row before the response's last byte goes out, so a client that reads its answer
    and then asks for usage or quota always sees this request counted."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(LOGGED_PREFIX):
            await self.app(scope, receive, send)
            return
        usage = RequestUsage(endpoint=scope["path"][:100])
        state = scope.setdefault("state", {})
        state["usage"] = usage
        started = time.perf_counter()
        status = 500
        logged = False

        async def log_once(final_status: int) -> None:
            nonlocal logged
            if logged:
                return
            logged = True
            principal = state.get("principal")
            key_id = principal.key_id if principal is not None else state.get("api_key_id")
            if principal is None and key_id is None:
                return  # no credentials, or wrong ones
            latency_ms = int((time.perf_counter() - started) * 1000)
            db = scope["app"].state.db
            await run_in_threadpool(
                log_request_usage, db, usage, key_id=key_id, status=final_status, latency_ms=latency_ms
            )

        async def send_and_log(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                await log_once(status)
            await send(message)

        try:
            await self.app(scope, receive, send_and_log)
        except Exception:
            await log_once(500)
            raise
        # The response ended without its last body message: the client left mid-stream.
        await log_once(usage.status or CLIENT_CLOSED)
