"""The outermost limit on request bodies: counted bytes per route class, before anything reads them.

FastAPI reads a JSON body before it resolves a route's dependencies (so before authentication), and
the CSRF check parses forms on any route a cookie reaches. Both would take a body of any size from a
caller with no credentials. This middleware refuses a body whose Content-Length is over the limit
before reading a byte, and counts the bytes of every other body as they arrive: past the limit the
app's read fails and the response becomes a 413 in the JSON error shape, whatever the route made of it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kb.db.files import size_limit_message

# The routes that take files or pasted documents: they get the upload limit (the routes may hold a body to a
# smaller one of their own, as the evaluation sets do), everything else the request limit.
UPLOAD_ROUTES = (
    re.compile(r"^/api/datasets/[^/]+/collections/?$"),
    re.compile(r"^/admin/datasets/[^/]+/text/?$"),
    re.compile(r"^/api/datasets/[^/]+/evals/?$"),
    re.compile(r"^/api/evals/[^/]+/items/?$"),
    re.compile(r"^/admin/evals/[^/]+/upload/?$"),
)
# Boundaries, part headers and small fields around the files themselves.
MULTIPART_ALLOWANCE = 256 * 1024


class BodyTooLarge(Exception):
    """Raised from `receive` once a body passes its route's limit."""


@dataclass(frozen=True)
class _Limit:
    """One route class's limit: `allowed` bytes are read, `shown` is the setting a refusal names."""

    allowed: int
    shown: int
    upload: bool

    def message(self, declared: int | None) -> str:
        if self.upload:
            if declared is None:
                return size_limit_message(self.shown)
            return (
                f"The upload is {declared / (1024 * 1024):,.0f} MB but the limit is {self.shown // (1024 * 1024)} MB "
                "(KB_MAX_UPLOAD_MB); send fewer or smaller files, or ask the administrator to raise the limit."
            )
        return (
            f"The request body is larger than the limit of {self.shown // 1024} kB (KB_MAX_REQUEST_KB); "
            "send less in one request, or ask the administrator to raise the limit."
        )


class BodyLimitMiddleware:
    """Refuses request bodies over `request_limit` bytes (uploads: `upload_limit`) with a 413."""

    def __init__(self, app: ASGIApp, request_limit: int, upload_limit: int) -> None:
        self.app = app
        self.request = _Limit(request_limit, request_limit, upload=False)
        self.upload = _Limit(upload_limit + MULTIPART_ALLOWANCE, upload_limit, upload=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload if any(route.match(scope["path"]) for route in UPLOAD_ROUTES) else self.request
        declared = _declared_length(scope)
        if declared is not None and declared > limit.allowed:
            await _refuse(send, limit.message(declared))
            return
        received = 0
        tripped = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, tripped
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.allowed:
                    tripped = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            # Once the body is over the limit, whatever the app answered (a 400 from a parser that saw
            # the error, a 401) is replaced by the one 413.
            if tripped:
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLarge:
            pass
        if tripped and not started:
            await _refuse(send, limit.message(None))


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, message: str) -> None:
    """A 413 in the JSON error shape the API uses everywhere."""
    error = {"message": message, "type": "invalid_request_error", "code": "request_too_large"}
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    # The unread rest of the body is not worth the bandwidth: the server closes the connection.
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
