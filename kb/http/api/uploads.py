"""Reading upload request bodies within the size limit: the declared length first, then every byte as it streams.

Multipart file parts are spooled to temporary files by Starlette's parser (at most 1 MB of each in
memory), so even a large upload is never held in memory whole.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser

from kb.db.files import size_limit_message
from kb.errors import BadRequest, PayloadTooLarge
from kb.http.security.body_limit import MULTIPART_ALLOWANCE

MAX_FILES = 100


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(size_limit_message(limit))


def check_declared_length(request: Request, limit: int) -> None:
    """Refuse at once a body whose Content-Length already says it is too large (before reading a byte)."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        length = int(declared)
    except ValueError as exc:
        raise BadRequest("The Content-Length header is not a number.", code="invalid_content_length") from exc
    if length > limit + MULTIPART_ALLOWANCE:
        raise PayloadTooLarge(
            f"The upload is {length / (1024 * 1024):,.0f} MB but the limit is {limit // (1024 * 1024)} MB "
            "(KB_MAX_UPLOAD_MB); send fewer or smaller files, or ask the administrator to raise the limit."
        )


async def _counted(request: Request, limit: int) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit + MULTIPART_ALLOWANCE:
            raise _too_large(limit)
        yield chunk


async def read_multipart(request: Request, limit: int) -> FormData:
    """Parse a multipart body, stopping as soon as it passes the limit; the caller closes the form."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadRequest("Send the file as multipart/form-data.", code="invalid_multipart")
    parser = MultiPartParser(request.headers, _counted(request, limit), max_files=MAX_FILES, max_fields=20)
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise BadRequest(f"The multipart upload could not be read: {exc.message}", code="invalid_multipart") from exc


async def read_json(request: Request, limit: int) -> Any:
    """Read and decode a JSON body within the limit."""
    body = bytearray()
    async for chunk in _counted(request, limit):
        body.extend(chunk)
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"The request body is not valid JSON ({exc}).", code="invalid_json") from exc
