"""The admin's chat logs: an app's conversations filtered by feedback, date and share link, and annotations.

An annotation is the admin's correct answer to a question an app answered badly, stored as a manual
Q/A pair in a dataset the app searches, so the next asker gets it as a quote (FastGPT's 标注).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from kb.db.store import chats as chat_store
from kb.db.store.chats import ChatRecord, MessageRecord
from kb.db.store.chunks import ChunkRecord
from kb.errors import BadRequest, not_found
from kb.runtime import Runtime
from kb.schemas import ChunkCreate
from kb.services.apps import get_app
from kb.services.chunks import add_manual_chunk

FEEDBACK_FILTERS = ("up", "down", "comment")


@dataclass(frozen=True)
class LogQuery:
    """What the logs page shows: one app's chats, optionally narrowed."""

    app_id: int
    feedback: str | None = None  # up | down | comment
    since: date | None = None
    until: date | None = None  # inclusive: the whole day
    share_link_id: int | None = None
    offset: int = 0
    limit: int = 50


def _start_of(day: date | None) -> datetime | None:
    return datetime.combine(day, time.min, tzinfo=UTC) if day else None


def list_logs(rt: Runtime, query: LogQuery) -> tuple[list[ChatRecord], int]:
    """The app's conversations, newest first, with the total matching."""
    if query.feedback is not None and query.feedback not in FEEDBACK_FILTERS:
        raise BadRequest(f"feedback must be one of {', '.join(FEEDBACK_FILTERS)}")
    until = _start_of(query.until + timedelta(days=1)) if query.until else None
    where = chat_store.log_filter(
        feedback=query.feedback, since=_start_of(query.since), until=until, share_link_id=query.share_link_id
    )
    with rt.db.session() as session:
        return chat_store.list_chats(session, app_id=query.app_id, offset=query.offset, limit=query.limit, where=where)


def app_conversation(rt: Runtime, app_id: int, chat_id: str) -> tuple[ChatRecord, list[MessageRecord]]:
    """One of the app's conversations with its messages."""
    with rt.db.session() as session:
        chat = chat_store.get_chat(session, chat_id)
        if chat is None or chat.app_id != app_id:
            raise not_found("chat", chat_id)
        return chat, chat_store.list_messages(session, chat_id)


def annotate(rt: Runtime, app_id: int, chat_id: str, dataset_id: int, question: str, answer: str) -> ChunkRecord:
    """Store the admin's correct answer to a question of this conversation as a Q/A pair in one of the app's
    datasets; it is searchable at once."""
    app = get_app(rt, app_id)
    app_conversation(rt, app_id, chat_id)
    if dataset_id not in app.dataset_ids:
        raise BadRequest("choose one of the app's own datasets, so its next answer can find the correction")
    return add_manual_chunk(rt, dataset_id, ChunkCreate(q=question, a=answer))
