"""`GET /healthz`: 200 when the database answers, 503 otherwise. No key needed.

The body also says whether the default chat model can answer: a missing model never stops the server,
it is reported here (and on the admin Models page) with what to do. `GET /api/generations`: how many answers
this process is generating (full access), so an operator or a test can see Stop free the CPU.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from kb.http.api.errors import error_body
from kb.http.deps import FullAccessDep, app_registry
from kb.services.model_checks import default_chat_health
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
    registry = app_registry(request.app.state)
    chat = default_chat_health(registry)
    # A chat model that cannot load leaves the rest of kb (search, upload, admin) working: say so, still 200.
    status = registry.chat_status()  # loading: ready, not loaded yet, or unavailable with why
    model = {
        "name": chat.name,
        "available": chat.available and status["state"] != "unavailable",
        "state": status["state"],
    }
    if not chat.available:
        model["detail"] = chat.detail
    elif "message" in status:
        model["detail"] = status["message"]
    return JSONResponse({"status": "ok", "chat_model": model})


@router.get("/api/generations", tags=["health"])
def generations(_: FullAccessDep) -> dict[str, int]:
    """Answers being generated right now in this process (a stopped one counts until its model has stopped)."""
    return {"running": running_generations()}
