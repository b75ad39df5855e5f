"""`/api/keys` (create, list, revoke) and `/api/usage`: for the root key and the admin session only.

A key that could manage keys could mint itself a stronger one (no expiry, no quota) or revoke the
others, so no API key but the root key may."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from kb.db.store.keys import KeyRecord
from kb.http.deps import runtime
from kb.http.security.auth import require_key_manager
from kb.schemas import KeyCreate
from kb.services import keys as key_service

router = APIRouter(prefix="/api", tags=["keys"], dependencies=[Depends(require_key_manager)])


class KeyPublic(BaseModel):
    id: int
    name: str
    prefix: str = Field(description="The start of the key, to recognise it; the key itself is never shown again.")
    scope: str = Field(description="'all', or 'app' for a key limited to app_id.")
    app_id: int | None
    expires_at: datetime | None
    token_quota: int | None
    tokens_used: int
    request_count: int
    last_used_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, record: KeyRecord) -> KeyPublic:
        return cls.model_validate({**asdict(record), "scope": "all" if record.app_id is None else "app"})


class KeyCreated(KeyPublic):
    key: str = Field(description="The key in clear. Shown this once: store it now.")


class UsageRow(BaseModel):
    key_id: int | None
    key_name: str | None
    key_prefix: str | None
    model: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    mean_latency_ms: float
    p95_latency_ms: float
    errors: int


class UsagePublic(BaseModel):
    since: datetime
    until: datetime
    rows: list[UsageRow]


@router.post("/keys", status_code=201, response_model=KeyCreated)
def create_key(body: KeyCreate, request: Request) -> KeyCreated:
    """Create a key; the response holds the key in clear, the only time it is shown."""
    created = key_service.create_key(runtime(request).db, **body.model_dump())
    return KeyCreated(**KeyPublic.of(created.record).model_dump(), key=created.key)


@router.get("/keys", response_model=list[KeyPublic])
def list_keys(request: Request) -> list[KeyPublic]:
    """Every key with its scope, expiry, quota and use."""
    return [KeyPublic.of(record) for record in key_service.list_keys(runtime(request).db)]


@router.delete("/keys/{key_id}", response_model=KeyPublic)
def revoke_key(key_id: int, request: Request) -> KeyPublic:
    """Revoke a key: it is refused from the next request on."""
    return KeyPublic.of(key_service.revoke_key(runtime(request).db, key_id))


@router.get("/usage", response_model=UsagePublic)
def usage(
    request: Request,
    since: datetime | None = Query(default=None, description="Start of the period (default: 30 days before until)."),
    until: datetime | None = Query(default=None, description="End of the period, exclusive (default: now)."),
    key_id: int | None = Query(default=None, description="Only this key's requests."),
) -> UsagePublic:
    """Requests, tokens, mean/p95 latency and errors per key and model over a period."""
    report = key_service.usage_report(runtime(request).db, since=since, until=until, key_id=key_id)
    rows = [UsageRow(**vars(row), total_tokens=row.prompt_tokens + row.completion_tokens) for row in report.rows]
    return UsagePublic(since=report.since, until=report.until, rows=rows)
