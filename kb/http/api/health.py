"""`GET /healthz`: 200 when the database answers, 503 otherwise, with the chat model's state. No key needed."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from kb.http.api.errors import error_body
from kb.http.deps import runtime

router = APIRouter()


@router.get("/healthz", tags=["health"])
def healthz(request: Request) -> JSONResponse:
    try:
        request.app.state.db.ping()
    except SQLAlchemyError:
        return JSONResponse(
            error_body("The database is not answering.", "server_error", "database_unavailable"),
            status_code=503,
            headers={"Retry-After": "5"},
        )
    # A chat model that cannot load leaves the rest of kb (search, upload, admin) working: say so, still 200.
    return JSONResponse({"status": "ok", "detail": {"chat_model": runtime(request).registry.chat_status()}})
