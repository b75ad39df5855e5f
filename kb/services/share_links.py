"""Share links: an app's chat for people without an admin login, each visitor seeing only their own chats.

A link is a capability: its token is in the URL it is published as. It may also need a password
(stored with argon2), expire, be rate-limited per visitor and be revoked; every answered question is
counted on it with its tokens. A visitor is a random id the browser keeps (kb.http.security.visitor).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kb.db.store import chats as chat_store
from kb.db.store import share_links as link_store
from kb.db.store.apps import AppRecord
from kb.db.store.chats import ChatRecord, MessageRecord
from kb.db.store.share_links import ShareLinkRecord
from kb.errors import BadRequest, KBError, found, not_found
from kb.ml.types import Completion, GenerationParams
from kb.runtime import Runtime
from kb.security import hash_password, verify_password
from kb.services import chats as chat_service
from kb.services.answering import AppQuestion, FinishedAnswer, app_question, ask_app
from kb.services.app_chat import response_extras
from kb.services.apps import chat_settings_of, get_app
from kb.services.gateway import APP_MODEL_PREFIX, ChatJob, ChatRequest, StreamItem

ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")


class ShareLinkUnavailable(KBError):
    """The link is unknown, revoked or expired: its page says so plainly (no login redirect)."""

    status_code = 404
    error_type = "not_found_error"
    code = "share_link_unavailable"


class ShareLinkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="Share link", min_length=1, max_length=200)
    password: str | None = Field(default=None, max_length=200, description="Visitors must type it; empty: none.")
    expires_at: datetime | None = None
    rate_limit_per_minute: int | None = Field(default=None, ge=1, le=10_000, description="Questions per visitor.")
    allowed_origins: list[str] = Field(default_factory=list, max_length=20, description="Sites that may embed it.")

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        cleaned = [origin.strip().rstrip("/") for origin in value if origin.strip()]
        for origin in cleaned:
            if not ORIGIN.match(origin):
                raise ValueError(f"'{origin}' is not an origin; write it as https://example.com (no path)")
        return cleaned


def create_link(rt: Runtime, app_id: int, data: ShareLinkCreate) -> ShareLinkRecord:
    """A new link for the app with an unguessable token (192 random bits)."""
    get_app(rt, app_id)
    with rt.db.session() as session:
        record = link_store.add_link(
            session,
            app_id=app_id,
            name=data.name,
            token=secrets.token_urlsafe(24),
            password_hash=hash_password(data.password) if data.password else None,
            expires_at=data.expires_at,
            rate_limit_per_minute=data.rate_limit_per_minute,
            allowed_origins=data.allowed_origins,
        )
        session.commit()
    return record


def list_links(rt: Runtime, app_id: int | None = None) -> list[ShareLinkRecord]:
    """The links (of one app), newest first."""
    with rt.db.session() as session:
        return link_store.list_links(session, app_id)


def revoke_link(rt: Runtime, link_id: int) -> ShareLinkRecord:
    """Stop the link working; its chats stay in the logs."""
    with rt.db.session() as session:
        found(link_store.get_link(session, link_id), "share link", link_id)
        link_store.revoke_link(session, link_id)
        session.commit()
        return link_store.get_link(session, link_id)


def open_link(rt: Runtime, token: str) -> ShareLinkRecord:
    """The usable link behind a token, or ShareLinkUnavailable saying why."""
    with rt.db.session() as session:
        link = link_store.find_by_token(session, token) if len(token) <= 64 else None
    if link is None:
        raise ShareLinkUnavailable("This share link does not exist. Ask whoever sent it for a new one.")
    if link.revoked_at is not None:
        raise ShareLinkUnavailable("This share link has been turned off by its owner.", code="share_link_revoked")
    if link.expires_at is not None and link.expires_at <= datetime.now(UTC):
        raise ShareLinkUnavailable("This share link has expired.", code="share_link_expired")
    return link


def password_matches(link: ShareLinkRecord, password: str) -> bool:
    return link.password_hash is not None and verify_password(link.password_hash, password)


def password_fingerprint(link: ShareLinkRecord) -> str | None:
    """Changes when the password does, so a visitor who unlocked an older one must unlock again."""
    if link.password_hash is None:
        return None
    return hashlib.sha256(link.password_hash.encode()).hexdigest()[:16]


def visitor_chats(rt: Runtime, link: ShareLinkRecord, visitor_id: str, limit: int = 50) -> list[ChatRecord]:
    """The visitor's own chats through this link, newest first."""
    with rt.db.session() as session:
        chats, _ = chat_store.list_chats(
            session, app_id=link.app_id, limit=limit, where=chat_store.visitor_filter(link.id, visitor_id)
        )
    return chats


def visitor_chat(
    rt: Runtime, link: ShareLinkRecord, visitor_id: str, chat_id: str
) -> tuple[ChatRecord, list[MessageRecord]]:
    """One of the visitor's chats; anybody else's is 404, as if it did not exist."""
    with rt.db.session() as session:
        chat = chat_store.get_chat(session, chat_id)
        if chat is None or chat.share_link_id != link.id or chat.visitor_id != visitor_id:
            raise not_found("chat", chat_id)
        return chat, chat_store.list_messages(session, chat_id)


def _question(rt: Runtime, app: AppRecord, link: ShareLinkRecord, visitor_id: str, request: ChatRequest) -> AppQuestion:
    """The new question; the history is the visitor's stored chat (never messages the request claims)."""
    question = app_question(rt, app, request.messages[-1:], None).question
    chat_id = request.extra.get("chatId")
    if chat_id is None:
        return AppQuestion(question, [])
    if not isinstance(chat_id, str):
        raise BadRequest("chatId must be a string")
    chat_service.check_chat_id(chat_id)
    with rt.db.session() as session:
        exists = chat_store.get_chat(session, chat_id) is not None
    stored = visitor_chat(rt, link, visitor_id, chat_id)[1] if exists else []
    return AppQuestion(question, [{"role": m.role, "content": m.content} for m in stored], chat_id)


def share_chat(rt: Runtime, link: ShareLinkRecord, visitor_id: str, request: ChatRequest) -> ChatJob:
    """A visitor's question to the link's app, answered with the app's settings and counted on the link."""
    app = get_app(rt, link.app_id)
    asked = _question(rt, app, link, visitor_id, request)
    chat = chat_settings_of(app)
    params = GenerationParams(temperature=chat.temperature, max_tokens=chat.max_tokens)
    extras: dict = {}

    def produce(cancel: threading.Event) -> Iterator[StreamItem]:
        answers = ask_app(rt, app, asked, params=params, source="share", cancel=cancel, visitor=(link.id, visitor_id))
        for item in answers:
            if not isinstance(item, FinishedAnswer):
                yield item
                continue
            answer = item.answer
            with rt.db.session() as session:
                link_store.count_use(session, link.id, answer.usage.total_tokens)
                session.commit()
            extras.update(response_extras(item, detail=True))
            yield Completion(
                answer.text, answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.finish_reason
            )

    return ChatJob(model=f"{APP_MODEL_PREFIX}{app.name}", produce=produce, extras=extras)
