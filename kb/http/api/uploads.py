"""Reading upload request bodies. Their size is held to the upload limit (KB_MAX_UPLOAD_MB) by the
outermost middleware (`kb.http.security.body_limit`), which counts every byte before the app sees it.

Multipart file parts are spooled to temporary files by Starlette's parser (at most 1 MB of each in
memory), so even a large upload is never held in memory whole.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser

from kb.errors import BadRequest

MAX_FILES = 100


async def read_multipart(request: Request) -> FormData:
    """Parse a multipart body; the caller closes the form."""
    parser = MultiPartParser(request.headers, request.stream(), max_files=MAX_FILES, max_fields=20)
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise BadRequest(f"The multipart upload could not be read: {exc.message}", code="invalid_multipart") from exc


async def read_json(request: Request) -> Any:
    """Read and decode a JSON body."""
    body = await request.body()
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"The request body is not valid JSON ({exc}).", code="invalid_json") from exc
