"""API keys and their usage log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from kb.db.store.records import record_of
from kb.db.tables import ApiKey, App, UsageLog


@dataclass(frozen=True)
class KeyRecord:
    id: int
    name: str
    prefix: str
    app_id: int | None
    expires_at: datetime | None
    token_quota: int | None
    tokens_used: int
    request_count: int
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime


def _record(row: ApiKey) -> KeyRecord:
    return record_of(KeyRecord, row)


def add_key(
    session: Session,
    *,
    name: str,
    prefix: str,
    key_hash: str,
    app_id: int | None = None,
    expires_at: datetime | None = None,
    token_quota: int | None = None,
) -> KeyRecord:
    row = ApiKey(
        name=name, prefix=prefix, key_hash=key_hash, app_id=app_id, expires_at=expires_at, token_quota=token_quota
    )
    session.add(row)
    session.flush()
    session.refresh(row)
    return _record(row)


def find_key_by_hash(session: Session, key_hash: str) -> KeyRecord | None:
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
    return _record(row) if row else None


def get_key(session: Session, key_id: int) -> KeyRecord | None:
    row = session.get(ApiKey, key_id)
    return _record(row) if row else None


def list_keys(session: Session) -> list[KeyRecord]:
    return [_record(r) for r in session.scalars(select(ApiKey).order_by(ApiKey.id))]


def revoke_key(session: Session, key_id: int) -> bool:
    result = session.execute(
        update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=func.now())
    )
    return result.rowcount > 0


def reserve_tokens(session: Session, key_id: int, tokens: int) -> bool:
    """Charge `tokens` to the key now, in one statement, unless that would pass its quota (then False)."""
    result = session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            (ApiKey.token_quota.is_(None)) | (ApiKey.tokens_used + tokens <= ApiKey.token_quota),
        )
        .values(tokens_used=ApiKey.tokens_used + tokens)
    )
    return result.rowcount > 0


def record_usage(
    session: Session,
    *,
    key_id: int | None,
    endpoint: str,
    model: str | None,
    prompt_tokens: int,
    completion_tokens: int,
    latency_ms: int,
    status: int,
    reserved_tokens: int = 0,
) -> None:
    """Log one request and add its tokens, less what `reserve_tokens` already charged, to the key's totals."""
    session.add(
        UsageLog(
            api_key_id=key_id,
            endpoint=endpoint,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=latency_ms,
            status=status,
        )
    )
    if key_id is not None:
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(
                tokens_used=ApiKey.tokens_used + prompt_tokens + completion_tokens - reserved_tokens,
                request_count=ApiKey.request_count + 1,
                last_used_at=func.now(),
            )
        )
    session.flush()


def prune_usage(session: Session, *, older_than_days: float) -> int:
    """Delete usage log rows older than `older_than_days`; returns how many went."""
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_days * 86400)
    return session.execute(delete(UsageLog).where(UsageLog.created_at < cutoff)).rowcount


def app_exists(session: Session, app_id: int) -> bool:
    """Whether an app with this id exists (a key scoped to it may be created)."""
    return session.scalar(select(App.id).where(App.id == app_id)) is not None


@dataclass(frozen=True)
class UsageSummary:
    """One key's use of one model over a period."""

    key_id: int | None
    key_name: str | None
    key_prefix: str | None
    model: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    mean_latency_ms: float
    p95_latency_ms: float
    errors: int


def summarise_usage(
    session: Session, *, since: datetime, until: datetime, key_id: int | None = None
) -> list[UsageSummary]:
    """Usage log rows in [since, until) grouped per key and model, busiest first."""
    query = (
        select(
            UsageLog.api_key_id,
            ApiKey.name,
            ApiKey.prefix,
            UsageLog.model,
            func.count(),
            func.coalesce(func.sum(UsageLog.prompt_tokens), 0),
            func.coalesce(func.sum(UsageLog.completion_tokens), 0),
            func.avg(UsageLog.latency_ms),
            func.percentile_cont(0.95).within_group(UsageLog.latency_ms),
            func.count().filter(UsageLog.status >= 400),
        )
        .outerjoin(ApiKey, ApiKey.id == UsageLog.api_key_id)
        .where(UsageLog.created_at >= since, UsageLog.created_at < until)
        .group_by(UsageLog.api_key_id, ApiKey.name, ApiKey.prefix, UsageLog.model)
        .order_by(func.count().desc(), UsageLog.api_key_id, UsageLog.model)
    )
    if key_id is not None:
        query = query.where(UsageLog.api_key_id == key_id)
    return [
        UsageSummary(
            key_id=row[0],
            key_name=row[1],
            key_prefix=row[2],
            model=row[3],
            requests=int(row[4]),
            prompt_tokens=int(row[5]),
            completion_tokens=int(row[6]),
            mean_latency_ms=float(row[7] or 0),
            p95_latency_ms=float(row[8] or 0),
            errors=int(row[9]),
        )
        for row in session.execute(query)
    ]
