"""What one `/v1` request used, and writing it to the usage log in its own short transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from kb.db.engine import Database
from kb.db.store import keys as key_store

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # nginx's status for a client that went away before the answer was complete


@dataclass
class RequestUsage:
    """Filled in by the route as it learns the model and token counts; logged when the response ends."""

    endpoint: str
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    status: int | None = None  # overrides the HTTP status: an error reported inside a 200 event stream

    def add_tokens(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens


def log_request_usage(db: Database, usage: RequestUsage, *, key_id: int | None, status: int, latency_ms: int) -> None:
    """Write one usage row (and the key's running totals); a failure to log never fails the request."""
    try:
        with db.session() as session:
            key_store.record_usage(
                session,
                key_id=key_id,
                endpoint=usage.endpoint,
                model=usage.model,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                latency_ms=latency_ms,
                status=usage.status or status,
            )
            session.commit()
    except SQLAlchemyError as exc:
        log.warning("could not log usage of %s: %s", usage.endpoint, exc)
