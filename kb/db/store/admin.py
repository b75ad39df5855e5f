"""Instance settings every process shares, failed-login bookkeeping, and the admin overview counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from kb.db.tables import AdminSession, ApiKey, App, Chunk, Collection, Dataset, LoginAttempt, Setting


def get_setting(session: Session, key: str) -> dict[str, Any] | None:
    return session.scalar(select(Setting.value).where(Setting.key == key))


def put_setting(session: Session, key: str, value: dict[str, Any]) -> None:
    """Store `value` under `key`, replacing what was there."""
    statement = insert(Setting).values(key=key, value=value)
    session.execute(
        statement.on_conflict_do_update(index_elements=[Setting.key], set_={"value": value, "updated_at": func.now()})
    )


def add_setting_if_absent(session: Session, key: str, value: dict[str, Any]) -> dict[str, Any]:
    """Store `value` unless `key` exists; return the stored value (the first writer wins a race)."""
    session.execute(insert(Setting).values(key=key, value=value).on_conflict_do_nothing(index_elements=[Setting.key]))
    return get_setting(session, key)


def add_session(session: Session, id_hash: str, seconds: float) -> None:
    """Keep a new admin session for `seconds`; expired ones are forgotten on the way."""
    session.execute(delete(AdminSession).where(AdminSession.expires_at < func.now()))
    session.add(AdminSession(id_hash=id_hash, expires_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, seconds)))


def session_is_live(session: Session, id_hash: str) -> bool:
    found = select(AdminSession.id_hash).where(AdminSession.id_hash == id_hash, AdminSession.expires_at > func.now())
    return session.scalar(found) is not None


def end_sessions(session: Session, id_hash: str | None = None) -> None:
    """End one admin session, or all of them (a password change)."""
    statement = delete(AdminSession)
    session.execute(statement if id_hash is None else statement.where(AdminSession.id_hash == id_hash))


def lock_seconds_left(session: Session, client: str) -> float:
    """How long `client` is still locked out of logging in (0 when it may try)."""
    left = session.scalar(
        select(func.extract("epoch", LoginAttempt.locked_until - func.now())).where(
            LoginAttempt.client == client, LoginAttempt.locked_until > func.now()
        )
    )
    return float(left or 0)


def record_failure(session: Session, client: str, *, forget_after_seconds: float) -> int:
    """Count one failed login for `client` and return its failures in a row.

    A client that stayed quiet for `forget_after_seconds` starts again from one.
    """
    return session.execute(
        text(
            """
            INSERT INTO login_attempt (client, failures, updated_at) VALUES (:client, 1, now())
            ON CONFLICT (client) DO UPDATE SET
                failures = CASE WHEN login_attempt.updated_at < now() - make_interval(secs => :forget)
                                THEN 1 ELSE login_attempt.failures + 1 END,
                updated_at = now()
            RETURNING failures
            """
        ),
        {"client": client, "forget": forget_after_seconds},
    ).scalar_one()


def lock_client(session: Session, client: str, seconds: float) -> None:
    session.execute(
        text("UPDATE login_attempt SET locked_until = now() + make_interval(secs => :s) WHERE client = :client"),
        {"client": client, "s": seconds},
    )


def clear_failures(session: Session, client: str) -> None:
    session.execute(delete(LoginAttempt).where(LoginAttempt.client == client))


@dataclass(frozen=True)
class OverviewCounts:
    datasets: int
    collections: int
    collections_ready: int
    collections_failed: int
    chunks: int
    apps: int
    active_keys: int


def overview_counts(session: Session) -> OverviewCounts:
    """What the instance holds, in one round trip."""
    count = func.count()
    row = session.execute(
        select(
            select(count).select_from(Dataset).scalar_subquery(),
            select(count).select_from(Collection).scalar_subquery(),
            select(count).select_from(Collection).where(Collection.status == "ready").scalar_subquery(),
            select(count).select_from(Collection).where(Collection.status == "error").scalar_subquery(),
            select(count).select_from(Chunk).scalar_subquery(),
            select(count).select_from(App).scalar_subquery(),
            select(count)
            .select_from(ApiKey)
            .where(ApiKey.revoked_at.is_(None), (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > func.now()))
            .scalar_subquery(),
        )
    ).one()
    return OverviewCounts(*row)
