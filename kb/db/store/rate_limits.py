"""Token buckets of the rate limits, shared by every process on the database (one statement per check)."""

from __future__ import annotations

from sqlalchemy import text

from kb.db.engine import Database

# Refill by the time since the bucket's last use, capped at its capacity; spend one token when there
# is one. `allowed` records whether this request got it (an upsert cannot return the old value). The
# SET expressions all read the row as it was; statement_timestamp() is this statement's own time.
_FILLED = "LEAST(:capacity, b.tokens + EXTRACT(EPOCH FROM statement_timestamp() - b.updated_at) * :rate)"
_TAKE = text(
    f"""
    INSERT INTO rate_bucket AS b (key, tokens, allowed, updated_at)
    VALUES (:key, :capacity - 1, true, statement_timestamp())
    ON CONFLICT (key) DO UPDATE SET
        tokens = {_FILLED} - CASE WHEN {_FILLED} >= 1 THEN 1 ELSE 0 END,
        allowed = {_FILLED} >= 1,
        updated_at = statement_timestamp()
    RETURNING b.tokens, b.allowed
    """
)


def take_token(db: Database, key: str, capacity: float, per_second: float) -> float:
    """Spend one token of bucket `key`; 0 when allowed, else the seconds until a token is back."""
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        tokens, allowed = conn.execute(_TAKE, {"key": key, "capacity": capacity, "rate": per_second}).one()
    return 0.0 if allowed else (1 - tokens) / per_second


def forget_idle_buckets(db: Database, idle_seconds: float) -> int:
    """Delete buckets untouched for `idle_seconds` (they would have refilled completely anyway)."""
    with db.engine.begin() as conn:
        result = conn.execute(
            text("DELETE FROM rate_bucket WHERE updated_at < statement_timestamp() - make_interval(secs => :s)"),
            {"s": idle_seconds},
        )
    return result.rowcount
