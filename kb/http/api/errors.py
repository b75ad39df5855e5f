"""One handler family: KBError and friends become JSON on /api and /v1, an HTML page elsewhere."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from kb.errors import KBError, ServiceUnavailable

log = logging.getLogger(__name__)

_JSON_PREFIXES = ("/api", "/v1", "/healthz")


def wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith(_JSON_PREFIXES) or "application/json" in request.headers.get("accept", "")


def error_body(message: str, error_type: str, code: str | None) -> dict:
    """OpenAI's error shape, used on /api as well."""
    return {"error": {"message": message, "type": error_type, "code": code}}


def render_error(
    request: Request, status: int, message: str, error_type: str, code: str | None, headers=None
) -> Response:
    if wants_json(request):
        return JSONResponse(error_body(message, error_type, code), status_code=status, headers=headers)
    from kb.http.pages.templating import render_error_page

    return render_error_page(request, status, message, headers=headers)


def _describe_validation(exc: RequestValidationError) -> tuple[str, str]:
    parts = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            return f"The request body is not valid JSON ({ctx.get('error', 'parse error')}).", "invalid_json"
        where = list(err.get("loc", ()))
        if where and where[0] in ("body", "query", "path", "header", "cookie"):
            where = where[1:]  # the location, not a field (a field may well be called "query")
        loc = ".".join(str(p) for p in where)
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(parts), "invalid_request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(KBError)
    async def _kb_error(request: Request, exc: KBError):
        return render_error(request, exc.status_code, exc.message, exc.error_type, exc.code, exc.headers or None)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        message, code = _describe_validation(exc)
        return render_error(request, 400, message, "invalid_request_error", code)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404:
            message = f"No such route: {request.method} {request.url.path}"
        return render_error(
            request, exc.status_code, message, "invalid_request_error", code, getattr(exc, "headers", None)
        )

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError):
        log.warning("database unavailable: %s", exc.orig)
        err = ServiceUnavailable("The database is not answering; try again in a moment.", code="database_unavailable")
        return render_error(request, err.status_code, err.message, err.error_type, err.code, {"Retry-After": "5"})

    @app.exception_handler(DataError)
    async def _bad_value(request: Request, exc: DataError):
        # SQLSTATE class 22 is about a value, and values come from the request: a NUL character in
        # a text, an id beyond bigint. That is the caller's to fix, not a server fault.
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else "invalid value"
        log.info("refused a value the database cannot store on %s %s: %s", request.method, request.url.path, reason)
        message = f"A value in the request cannot be stored: {reason}."
        return render_error(request, 400, message, "invalid_request_error", "invalid_value")

    @app.exception_handler(DBAPIError)
    async def _db_error(request: Request, exc: DBAPIError):
        if exc.connection_invalidated:
            return await _db_down(request, exc)  # type: ignore[arg-type]
        log.exception("database error")
        return render_error(
            request, 500, "Internal error while talking to the database.", "server_error", "internal_error"
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return render_error(request, 500, "Internal server error.", "server_error", "internal_error")
