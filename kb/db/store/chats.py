"""Chats and their messages: the conversation history of each app."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from kb.db.store.records import record_of
from kb.db.tables import Chat, Message


@dataclass(frozen=True)
class ChatRecord:
    id: str
    app_id: int
    api_key_id: int | None
    title: str
    source: str
    created_at: datetime
    updated_at: datetime
    message_count: int = 0
    share_link_id: int | None = None
    visitor_id: str | None = None


@dataclass(frozen=True)
class MessageRecord:
    id: int
    chat_id: str
    role: str
    content: str
    quotes: list[dict[str, Any]]
    usage: dict[str, Any]
    timings: dict[str, Any]
    feedback: int | None
    feedback_comment: str | None
    created_at: datetime


def _chat(row: Chat, message_count: int = 0) -> ChatRecord:
    return record_of(ChatRecord, row, message_count=message_count)


def _message(row: Message) -> MessageRecord:
    return record_of(MessageRecord, row)


def _counts():
    return select(Message.chat_id, func.count().label("n")).group_by(Message.chat_id).subquery()


def get_chat(session: Session, chat_id: str) -> ChatRecord | None:
    counts = _counts()
    found = session.execute(
        select(Chat, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.chat_id == Chat.id)
        .where(Chat.id == chat_id)
    ).first()
    return _chat(*found) if found else None


def ensure_chat(
    session: Session,
    chat_id: str,
    *,
    app_id: int,
    api_key_id: int | None,
    title: str,
    source: str,
    share_link_id: int | None = None,
    visitor_id: str | None = None,
) -> int:
    """Create the chat unless it exists (two first requests with one chatId both succeed); returns the app that
    owns it, with the row locked until the transaction ends so the owner cannot change before the write."""
    values = {"app_id": app_id, "api_key_id": api_key_id, "title": title, "source": source}
    if visitor_id is not None:
        values.update(share_link_id=share_link_id, visitor_id=visitor_id)
    session.execute(insert(Chat).values(id=chat_id, **values).on_conflict_do_nothing(index_elements=[Chat.id]))
    return session.scalar(select(Chat.app_id).where(Chat.id == chat_id).with_for_update())


def list_chats(
    session: Session, *, app_id: int | None = None, offset: int = 0, limit: int = 50, where: Sequence[Any] = ()
) -> tuple[list[ChatRecord], int]:
    """Chats newest-first (optionally of one app, and matching `where`) with message counts, and the total."""
    counts = _counts()
    conditions = [*where, *([Chat.app_id == app_id] if app_id is not None else [])]
    query = select(Chat, func.coalesce(counts.c.n, 0)).outerjoin(counts, counts.c.chat_id == Chat.id)
    total_query = select(func.count()).select_from(Chat)
    if conditions:
        query = query.where(*conditions)
        total_query = total_query.where(*conditions)
    rows = session.execute(query.order_by(Chat.updated_at.desc(), Chat.id).offset(offset).limit(limit)).all()
    return [_chat(row, n) for row, n in rows], int(session.scalar(total_query) or 0)


def rename_chat(session: Session, chat_id: str, title: str) -> bool:
    return (
        session.execute(update(Chat).where(Chat.id == chat_id).values(title=title, updated_at=func.now())).rowcount > 0
    )


def touch_chat(session: Session, chat_id: str) -> None:
    session.execute(update(Chat).where(Chat.id == chat_id).values(updated_at=func.now()))


def delete_chat(session: Session, chat_id: str) -> bool:
    return session.execute(delete(Chat).where(Chat.id == chat_id)).rowcount > 0


def add_message(
    session: Session,
    chat_id: str,
    *,
    role: str,
    content: str,
    quotes: list[dict[str, Any]] | None = None,
    usage: dict[str, Any] | None = None,
    timings: dict[str, Any] | None = None,
) -> MessageRecord:
    row = Message(
        chat_id=chat_id, role=role, content=content, quotes=quotes or [], usage=usage or {}, timings=timings or {}
    )
    session.add(row)
    session.flush()
    session.refresh(row)
    return _message(row)


def list_messages(session: Session, chat_id: str) -> list[MessageRecord]:
    """A chat's messages in the order they were written."""
    return [
        _message(r) for r in session.scalars(select(Message).where(Message.chat_id == chat_id).order_by(Message.id))
    ]


def get_message(session: Session, message_id: int) -> MessageRecord | None:
    row = session.get(Message, message_id)
    return _message(row) if row else None


def set_feedback(session: Session, message_id: int, rating: int | None, comment: str | None) -> MessageRecord | None:
    row = session.get(Message, message_id)
    if row is None:
        return None
    row.feedback, row.feedback_comment = rating, comment
    session.flush()
    return _message(row)


def visitor_filter(share_link_id: int, visitor_id: str) -> list[Any]:
    """`list_chats(where=...)`: the chats one share-link visitor started."""
    return [Chat.share_link_id == share_link_id, Chat.visitor_id == visitor_id]


def log_filter(
    *, feedback: str | None = None, since: datetime | None = None, until: datetime | None = None, share_link_id=None
) -> list[Any]:
    """`list_chats(where=...)` for the admin's logs: chats with this feedback (up, down, comment), active in
    [since, until), started through this share link."""
    conditions: list[Any] = []
    rated = {
        "up": Message.feedback == 1,
        "down": Message.feedback == -1,
        "comment": Message.feedback_comment.isnot(None),
    }
    if feedback in rated:
        conditions.append(exists().where(Message.chat_id == Chat.id, rated[feedback]))
    if since is not None:
        conditions.append(Chat.updated_at >= since)
    if until is not None:
        conditions.append(Chat.updated_at < until)
    if share_link_id is not None:
        conditions.append(Chat.share_link_id == share_link_id)
    return conditions
