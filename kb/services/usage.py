"""What one `/v1` request used, and writing it to the usage log in its own short transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from kb.db.engine import Database
from kb.db.store import keys as key_store
from kb.errors import RateLimited

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
    reserved_tokens: int = 0  # already charged to the key before generating; the final count replaces it

    def add_tokens(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens


def estimate_tokens(messages: list[dict]) -> int:
    """An upper-leaning guess of a prompt's tokens before any model counts them: a token per 4 ASCII
    characters, one per other character (Chinese runs about one token per character)."""
    text = "".join(m["content"] if isinstance(m.get("content"), str) else str(m.get("content") or "") for m in messages)
    ascii_chars = sum(1 for char in text if char.isascii())
    return ascii_chars // 4 + (len(text) - ascii_chars) + 4 * len(messages)


def reserve_quota(db: Database, usage: RequestUsage, key_id: int, prompt_tokens: int, completion_tokens: int) -> None:
    """Charge a request's most tokens to its key before generating, atomically against the quota.

    Until the answer's real count replaces it, the reservation is the usage: a client that leaves
    before the end pays for what it asked for, and parallel requests cannot together pass the quota.
    """
    with db.session() as session:
        reserved = key_store.reserve_tokens(session, key_id, prompt_tokens + completion_tokens)
        record = key_store.get_key(session, key_id)
        session.commit()
    if not reserved:
        left = max(0, (record.token_quota or 0) - record.tokens_used) if record else 0
        raise RateLimited(
            f"This request may use up to {prompt_tokens + completion_tokens} tokens (prompt and max_tokens) but this "
            f"API key has {left} of its quota left; send a smaller max_tokens or use another key.",
            code="insufficient_quota",
        )
    usage.add_tokens(prompt_tokens, completion_tokens)
    usage.reserved_tokens = prompt_tokens + completion_tokens


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
                reserved_tokens=usage.reserved_tokens,
            )
            session.commit()
    except SQLAlchemyError as exc:
        log.warning("could not log usage of %s: %s", usage.endpoint, exc)
