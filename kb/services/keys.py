"""API key use cases: create (the key is shown once), list, revoke, and usage over a period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kb.db.engine import Database
from kb.db.store import keys as key_store
from kb.db.store.keys import KeyRecord, UsageSummary
from kb.errors import BadRequest, not_found
from kb.security import display_prefix, generate_api_key, hash_api_key

DEFAULT_USAGE_DAYS = 30


@dataclass(frozen=True)
class NewKey:
    key: str  # in clear: returned to its creator once, never stored
    record: KeyRecord


@dataclass(frozen=True)
class UsageReport:
    since: datetime
    until: datetime
    rows: list[UsageSummary]


def _aware(moment: datetime) -> datetime:
    """Times without a zone are read as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def key_expiry(expires_at: datetime | None, expires_in_days: int | None, now: datetime) -> datetime | None:
    """The moment a new key stops working, from either an absolute time or a number of days."""
    if expires_at is not None and expires_in_days is not None:
        raise BadRequest("send either expires_at or expires_in_days, not both")
    if expires_in_days is not None:
        return now + timedelta(days=expires_in_days)
    if expires_at is not None:
        expires_at = _aware(expires_at)
        if expires_at <= now:
            raise BadRequest(f"expires_at ({expires_at.isoformat()}) is in the past; choose a future time")
    return expires_at


def create_key(
    db: Database,
    *,
    name: str,
    app_id: int | None = None,
    expires_at: datetime | None = None,
    expires_in_days: int | None = None,
    token_quota: int | None = None,
) -> NewKey:
    """Make a key (scoped to one app when `app_id` is given); only its SHA-256 is stored."""
    expiry = key_expiry(expires_at, expires_in_days, datetime.now(UTC))
    key = generate_api_key()
    with db.session() as session:
        if app_id is not None and not key_store.app_exists(session, app_id):
            raise BadRequest(
                f"there is no app with id {app_id}; create the app first or omit app_id", code="app_not_found"
            )
        record = key_store.add_key(
            session,
            name=name,
            prefix=display_prefix(key),
            key_hash=hash_api_key(key),
            app_id=app_id,
            expires_at=expiry,
            token_quota=token_quota,
        )
        session.commit()
    return NewKey(key=key, record=record)


def list_keys(db: Database) -> list[KeyRecord]:
    """Every key, revoked ones included (never the key or its hash)."""
    with db.session() as session:
        return key_store.list_keys(session)


def revoke_key(db: Database, key_id: int) -> KeyRecord:
    """Revoke a key; revoking it again is harmless."""
    with db.session() as session:
        if key_store.get_key(session, key_id) is None:
            raise not_found("API key", key_id, code="key_not_found")
        key_store.revoke_key(session, key_id)
        session.commit()
        record = key_store.get_key(session, key_id)
    assert record is not None
    return record


def usage_report(
    db: Database, *, since: datetime | None = None, until: datetime | None = None, key_id: int | None = None
) -> UsageReport:
    """Requests, tokens, latency and errors per key and model in [since, until) (default: the last 30 days)."""
    try:
        until = _aware(until) if until is not None else datetime.now(UTC)
        since = _aware(since) if since is not None else until - timedelta(days=DEFAULT_USAGE_DAYS)
    except OverflowError as exc:  # e.g. until=0001-01-02: 30 days before it is no date at all
        raise BadRequest("since/until are out of the range of dates; give dates between the years 1 and 9999") from exc
    if since >= until:
        raise BadRequest(f"since ({since.isoformat()}) must be before until ({until.isoformat()})")
    with db.session() as session:
        rows = key_store.summarise_usage(session, since=since, until=until, key_id=key_id)
    return UsageReport(since=since, until=until, rows=rows)
