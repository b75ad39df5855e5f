"""`GET /healthz`: 200 when the database answers, 503 otherwise (no key needed); `GET /api/generations`: how many
answers this process is generating (full access), so an operator or a test can see Stop free the CPU."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from kb.http.api.errors import error_body
from kb.http.deps import FullAccessDep
from kb.services.threaded_stream import running_generations

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
    return JSONResponse({"status": "ok"})


@router.get("/api/generations", tags=["health"])
def generations(_: FullAccessDep) -> dict[str, int]:
    """Answers being generated right now in this process (a stopped one counts until its model has stopped)."""
    return {"running": running_generations()}
