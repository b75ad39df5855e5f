"""Share links: an app's public chat pages, with their limits and usage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from kb.db.store.records import record_of
from kb.db.tables import ShareLink


@dataclass(frozen=True)
class ShareLinkRecord:
    id: int
    app_id: int
    name: str
    token: str
    password_hash: str | None
    expires_at: datetime | None
    rate_limit_per_minute: int | None
    allowed_origins: list[str]
    use_count: int
    tokens_used: int
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime


def _record(row: ShareLink) -> ShareLinkRecord:
    return record_of(ShareLinkRecord, row)


def add_link(session: Session, **values: Any) -> ShareLinkRecord:
    row = ShareLink(**values)
    session.add(row)
    session.flush()
    session.refresh(row)
    return _record(row)


def get_link(session: Session, link_id: int) -> ShareLinkRecord | None:
    row = session.get(ShareLink, link_id)
    return _record(row) if row else None


def find_by_token(session: Session, token: str) -> ShareLinkRecord | None:
    row = session.scalar(select(ShareLink).where(ShareLink.token == token))
    return _record(row) if row else None


def list_links(session: Session, app_id: int | None = None) -> list[ShareLinkRecord]:
    """Links newest first (optionally of one app)."""
    query = select(ShareLink).order_by(ShareLink.id.desc())
    if app_id is not None:
        query = query.where(ShareLink.app_id == app_id)
    return [_record(row) for row in session.scalars(query)]


def revoke_link(session: Session, link_id: int) -> bool:
    changed = session.execute(
        update(ShareLink).where(ShareLink.id == link_id, ShareLink.revoked_at.is_(None)).values(revoked_at=func.now())
    )
    return changed.rowcount > 0


def count_use(session: Session, link_id: int, tokens: int) -> None:
    """One more answered question and its tokens."""
    session.execute(
        update(ShareLink)
        .where(ShareLink.id == link_id)
        .values(use_count=ShareLink.use_count + 1, tokens_used=ShareLink.tokens_used + tokens, last_used_at=func.now())
    )
