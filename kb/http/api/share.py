"""`/api/share/{token}/...`: what a share-link visitor's page calls, and `/api/apps/{id}/share-links` for the admin.

A visitor is known by the signed `X-KB-Visitor` header (kb/http/security/visitor.py), sees only the
chats they started through this link, and reaches nothing else: these routes take no key and no
session, and every other route still needs one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from kb.db.store.share_links import ShareLinkRecord
from kb.http.api.chats import ChatDetail, ChatList, ChatRename, Feedback, MessagePublic, chat_public, message_public
from kb.http.api.openai_chat import respond
from kb.http.api.openai_schemas import ChatCompletionRequest
from kb.http.api.usage_log import request_usage
from kb.http.deps import FullAccessDep, RuntimeDep, runtime
from kb.http.pages.chat import RenderRequest, render_fragment
from kb.http.security import visitor as visitors
from kb.principal import Principal
from kb.services import chats as chat_service
from kb.services import share_links as share_service
from kb.services.chat_export import chat_markdown
from kb.services.share_links import ShareLinkCreate

router = APIRouter(tags=["share"])


def current_visitor(token: str, request: Request) -> visitors.Visitor:
    return visitors.api_visitor(runtime(request), token, request)


VisitorDep = Annotated[visitors.Visitor, Depends(current_visitor)]


@router.post("/api/share/{token}/chat")
async def visitor_chat(body: ChatCompletionRequest, request: Request, visitor: VisitorDep):
    """Ask the link's app (OpenAI's request and stream shape; `model` is ignored, `chatId` keeps the chat)."""
    visitors.limit_visitor(request, visitor)
    rt = runtime(request)
    job = await run_in_threadpool(
        share_service.share_chat, rt, visitor.link, visitor.visitor_id, body.to_chat_request()
    )
    usage = request_usage(request)
    return await respond(request, job, stream=body.stream, include_usage=False, usage=usage)


@router.post("/api/share/{token}/render", include_in_schema=False)
def visitor_render(token: str, body: RenderRequest, request: Request, _: VisitorDep):
    return render_fragment(request, body, runtime(request), f"/s/{token}/files/{{id}}")


@router.get("/api/share/{token}/chats", response_model=ChatList)
def visitor_chats(request: Request, visitor: VisitorDep) -> ChatList:
    chats = share_service.visitor_chats(runtime(request), visitor.link, visitor.visitor_id)
    return ChatList(data=[chat_public(chat) for chat in chats], total=len(chats))


def _own_chat(request: Request, visitor: visitors.Visitor, chat_id: str):
    return share_service.visitor_chat(runtime(request), visitor.link, visitor.visitor_id, chat_id)


@router.get("/api/share/{token}/chats/{chat_id}", response_model=ChatDetail)
def visitor_chat_detail(chat_id: str, request: Request, visitor: VisitorDep) -> ChatDetail:
    chat, messages = _own_chat(request, visitor, chat_id)
    return ChatDetail(**chat_public(chat).model_dump(), messages=[message_public(m) for m in messages])


@router.get("/api/share/{token}/chats/{chat_id}/export")
def visitor_chat_export(chat_id: str, request: Request, visitor: VisitorDep) -> PlainTextResponse:
    chat, messages = _own_chat(request, visitor, chat_id)
    return PlainTextResponse(chat_markdown(chat, messages), media_type="text/markdown; charset=utf-8")


@router.patch("/api/share/{token}/chats/{chat_id}")
def visitor_rename(chat_id: str, body: ChatRename, request: Request, visitor: VisitorDep):
    _own_chat(request, visitor, chat_id)
    chat = chat_service.rename_chat(runtime(request).db, _scoped(visitor), chat_id, body.title)
    return chat_public(chat)


@router.delete("/api/share/{token}/chats/{chat_id}", status_code=204)
def visitor_delete(chat_id: str, request: Request, visitor: VisitorDep) -> Response:
    _own_chat(request, visitor, chat_id)
    chat_service.delete_chat(runtime(request).db, _scoped(visitor), chat_id)
    return Response(status_code=204)


@router.post("/api/share/{token}/chats/{chat_id}/messages/{message_id}/feedback", response_model=MessagePublic)
def visitor_feedback(chat_id: str, message_id: int, body: Feedback, request: Request, visitor: VisitorDep):
    _own_chat(request, visitor, chat_id)
    db = runtime(request).db
    return message_public(
        chat_service.set_feedback(db, _scoped(visitor), chat_id, message_id, body.rating, body.comment)
    )


def _scoped(visitor: visitors.Visitor):
    """The visitor as the chat service's principal: limited to the link's app (after the ownership check)."""
    return Principal(kind="visitor", app_id=visitor.link.app_id)


@router.get("/api/share/{token}/embed.json")
def embed_config(token: str, request: Request, rt: RuntimeDep) -> JSONResponse:
    """What the chat bubble script needs; readable cross-origin only by the sites the link lists (CORS)."""
    link = share_service.open_link(rt, token)
    origin = request.headers.get("origin")
    headers = {"Vary": "Origin"}
    if origin and origin in link.allowed_origins:
        headers["Access-Control-Allow-Origin"] = origin
    return JSONResponse({"url": f"/s/{token}?embed=1", "name": link.name}, headers=headers)


class ShareLinkPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    app_id: int
    name: str
    token: str
    url: str
    has_password: bool
    expires_at: datetime | None
    rate_limit_per_minute: int | None
    allowed_origins: list[str]
    use_count: int
    tokens_used: int
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime


def link_public(link: ShareLinkRecord) -> ShareLinkPublic:
    values = {**link.__dict__, "url": f"/s/{link.token}", "has_password": link.password_hash is not None}
    return ShareLinkPublic.model_validate(values)


@router.post("/api/apps/{app_id}/share-links", response_model=ShareLinkPublic, status_code=201)
def create_share_link(app_id: int, body: ShareLinkCreate, rt: RuntimeDep, _: FullAccessDep) -> ShareLinkPublic:
    return link_public(share_service.create_link(rt, app_id, body))


@router.get("/api/apps/{app_id}/share-links", response_model=list[ShareLinkPublic])
def list_share_links(app_id: int, rt: RuntimeDep, _: FullAccessDep) -> list[ShareLinkPublic]:
    return [link_public(link) for link in share_service.list_links(rt, app_id)]


@router.post("/api/share-links/{link_id}/revoke", response_model=ShareLinkPublic)
def revoke_share_link(link_id: int, rt: RuntimeDep, _: FullAccessDep) -> ShareLinkPublic:
    return link_public(share_service.revoke_link(rt, link_id))
