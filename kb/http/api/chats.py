"""`/api/chats`: list, read, rename and delete conversations, and give feedback on answers.

App-scoped keys may use these routes for their own app's chats only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kb.db.store.chats import ChatRecord, MessageRecord
from kb.http.deps import PrincipalDep, runtime
from kb.services import chats as chat_service
from kb.services.chat_export import chat_markdown

router = APIRouter(prefix="/api/chats", tags=["chats"])


class ChatPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    app_id: int
    title: str
    source: str
    message_count: int
    created_at: datetime
    updated_at: datetime


class ChatList(BaseModel):
    data: list[ChatPublic]
    total: int


class MessagePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    role: str
    content: str
    quotes: list[dict[str, Any]]
    usage: dict[str, Any]
    timings: dict[str, Any]
    feedback: Literal["up", "down"] | None
    feedback_comment: str | None
    created_at: datetime

    @field_validator("feedback", mode="before")
    @classmethod
    def _rating(cls, value: object) -> object:
        """Stored as 1 / -1; shown as the words the API takes."""
        return {1: "up", -1: "down"}.get(value, value) if isinstance(value, int) else value


class ChatDetail(ChatPublic):
    messages: list[MessagePublic]


class ChatRename(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: Literal["up", "down"] | None = Field(description="Thumbs up or down; null clears it.")
    comment: str | None = Field(default=None, max_length=5000)


def chat_public(chat: ChatRecord) -> ChatPublic:
    return ChatPublic.model_validate(chat)


def message_public(message: MessageRecord) -> MessagePublic:
    return MessagePublic.model_validate(message)


@router.get("", response_model=ChatList)
def list_chats(
    request: Request,
    principal: PrincipalDep,
    app_id: int | None = Query(default=None, description="Only this app's chats (implied for app keys)."),
    offset: int = Query(default=0, ge=0),
    limit: int = Query(default=50, ge=1, le=200),
) -> ChatList:
    chats, total = chat_service.list_chats(runtime(request).db, principal, app_id=app_id, offset=offset, limit=limit)
    return ChatList(data=[chat_public(c) for c in chats], total=total)


@router.get("/{chat_id}", response_model=ChatDetail)
def get_chat(chat_id: str, request: Request, principal: PrincipalDep) -> ChatDetail:
    chat, messages = chat_service.get_chat(runtime(request).db, principal, chat_id)
    return ChatDetail(**chat_public(chat).model_dump(), messages=[message_public(m) for m in messages])


@router.get("/{chat_id}/export")
def export_chat(chat_id: str, request: Request, principal: PrincipalDep) -> PlainTextResponse:
    """The conversation as Markdown, to download."""
    chat, messages = chat_service.get_chat(runtime(request).db, principal, chat_id)
    return PlainTextResponse(chat_markdown(chat, messages), media_type="text/markdown; charset=utf-8")


@router.patch("/{chat_id}", response_model=ChatPublic)
def rename_chat(chat_id: str, body: ChatRename, request: Request, principal: PrincipalDep) -> ChatPublic:
    return chat_public(chat_service.rename_chat(runtime(request).db, principal, chat_id, body.title))


@router.delete("/{chat_id}", status_code=204)
def delete_chat(chat_id: str, request: Request, principal: PrincipalDep) -> Response:
    chat_service.delete_chat(runtime(request).db, principal, chat_id)
    return Response(status_code=204)


@router.post("/{chat_id}/messages/{message_id}/feedback", response_model=MessagePublic)
def give_feedback(
    chat_id: str, message_id: int, body: Feedback, request: Request, principal: PrincipalDep
) -> MessagePublic:
    message = chat_service.set_feedback(runtime(request).db, principal, chat_id, message_id, body.rating, body.comment)
    return message_public(message)
