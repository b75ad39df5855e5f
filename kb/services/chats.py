"""Conversations: server-side history per chatId, the finished turns, and feedback on answers.

A turn is stored only once its answer is complete, both messages in one transaction, so a failed
generation never leaves half an answer in the history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kb.db.engine import Database
from kb.db.store import chats as chat_store
from kb.db.store.chats import ChatRecord, MessageRecord
from kb.errors import BadRequest, not_found
from kb.principal import Principal
from kb.rag.answer import Answer

CHAT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
TITLE_CHARS = 60


@dataclass(frozen=True)
class StoredTurn:
    chat_id: str
    user_message_id: int
    assistant_message_id: int


def check_chat_id(chat_id: str) -> str:
    """A chatId is up to 100 letters, digits and `_ . : -`."""
    if not CHAT_ID.match(chat_id):
        raise BadRequest(
            "chatId must be 1-100 characters of letters, digits, '_', '.', ':' or '-'", code="invalid_chat_id"
        )
    return chat_id


def _visible_chat(db: Database, principal: Principal, chat_id: str) -> ChatRecord:
    """The chat if this caller may see it; an app key gets 404 for other apps' chats, as if they did not exist."""
    with db.session() as session:
        chat = chat_store.get_chat(session, chat_id)
    if chat is None or (principal.app_id is not None and chat.app_id != principal.app_id):
        raise not_found("chat", chat_id)
    return chat


def history_for(db: Database, chat_id: str, app_id: int) -> list[dict]:
    """The stored messages of `chat_id` as chat messages; empty for a new chat; refused if another app owns it."""
    with db.session() as session:
        chat = chat_store.get_chat(session, check_chat_id(chat_id))
        if chat is None:
            return []
        if chat.app_id != app_id:
            raise not_found("chat", chat_id)  # as if it did not exist: nothing leaks of other apps
        return [{"role": m.role, "content": m.content} for m in chat_store.list_messages(session, chat_id)]


def save_turn(
    db: Database,
    *,
    chat_id: str,
    app_id: int,
    api_key_id: int | None,
    source: str,
    question: str,
    answer: Answer,
    visitor: tuple[int, str] | None = None,
) -> StoredTurn:
    """Store the question and its finished answer (with quotes, usage and timings) in one transaction.

    `visitor` is (share link id, visitor id) for a chat started through a share link."""
    share_link_id, visitor_id = visitor or (None, None)
    with db.session() as session:
        owner = chat_store.ensure_chat(
            session,
            chat_id,
            app_id=app_id,
            api_key_id=api_key_id,
            title=" ".join(question.split())[:TITLE_CHARS],
            source=source,
            share_link_id=share_link_id,
            visitor_id=visitor_id,
        )
        if owner != app_id:  # another app took this chatId while the answer was written
            raise not_found("chat", chat_id)  # as if it did not exist: nothing leaks of other apps
        asked = chat_store.add_message(session, chat_id, role="user", content=question)
        answered = chat_store.add_message(
            session,
            chat_id,
            role="assistant",
            content=answer.text,
            quotes=[q.to_dict() for q in answer.quotes],
            usage=answer.usage.to_dict(),
            timings={
                **answer.timings.to_dict(),
                "query": answer.query,
                "not_found": answer.not_found,
                "model": answer.model,
                "cited_by": answer.cited_by,
                "corrected_citations": [{"written": a, "shown": b} for a, b in answer.corrected_citations],
                "finish_reason": answer.finish_reason,  # "stopped": cut short by Stop, the partial answer
            },
        )
        chat_store.touch_chat(session, chat_id)
        session.commit()
    return StoredTurn(chat_id, asked.id, answered.id)


def list_chats(
    db: Database, principal: Principal, *, app_id: int | None, offset: int = 0, limit: int = 50
) -> tuple[list[ChatRecord], int]:
    """Chats newest-first; an app key sees only its app's chats."""
    if principal.app_id is not None:
        principal.require_app(app_id if app_id is not None else principal.app_id)
        app_id = principal.app_id
    with db.session() as session:
        return chat_store.list_chats(session, app_id=app_id, offset=offset, limit=limit)


def get_chat(db: Database, principal: Principal, chat_id: str) -> tuple[ChatRecord, list[MessageRecord]]:
    """The chat and its messages."""
    chat = _visible_chat(db, principal, chat_id)
    with db.session() as session:
        return chat, chat_store.list_messages(session, chat_id)


def rename_chat(db: Database, principal: Principal, chat_id: str, title: str) -> ChatRecord:
    """Give the chat a new title."""
    _visible_chat(db, principal, chat_id)
    title = " ".join(title.split())
    if not title:
        raise BadRequest("title must not be empty")
    with db.session() as session:
        chat_store.rename_chat(session, chat_id, title[:300])
        session.commit()
        return chat_store.get_chat(session, chat_id)


def delete_chat(db: Database, principal: Principal, chat_id: str) -> None:
    """Delete the chat and its messages."""
    _visible_chat(db, principal, chat_id)
    with db.session() as session:
        chat_store.delete_chat(session, chat_id)
        session.commit()


RATINGS = {"up": 1, "down": -1, None: None}


def set_feedback(
    db: Database, principal: Principal, chat_id: str, message_id: int, rating: str | None, comment: str | None
) -> MessageRecord:
    """Thumbs up/down (or None to clear) with an optional comment, on one of the chat's answers."""
    _visible_chat(db, principal, chat_id)
    with db.session() as session:
        message = chat_store.get_message(session, message_id)
        if message is None or message.chat_id != chat_id:
            raise not_found("message", message_id)
        if message.role != "assistant":
            raise BadRequest("feedback goes on an answer (an assistant message), not on a question")
        updated = chat_store.set_feedback(session, message_id, RATINGS[rating], (comment or "").strip() or None)
        session.commit()
    return updated
