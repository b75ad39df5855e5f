"""`/s/{token}`: an app's chat for people without an admin login, opened through a share link.

The page shows one app and only the visitor's own conversations; a password link first asks for
its password; an unknown, revoked or expired link gets a plain page saying so (never the login
page). The visitor's API lives under `/api/share/{token}` (kb/http/api/share.py). A link whose
admin listed sites may be framed by them (`frame-ancestors`); the `embed=1` view is the compact one
the chat bubble (web/static/embed.js) opens.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from kb.errors import NotFound
from kb.http.api.collections import file_response
from kb.http.deps import RuntimeDep
from kb.http.pages.chat import NO_STORE, chat_lines, file_links
from kb.http.pages.templating import render
from kb.http.security import visitor as visitors
from kb.services import share_links as share_service
from kb.services.apps import chat_settings_of, get_app
from kb.services.originals import original_file
from kb.services.share_links import ShareLinkUnavailable

router = APIRouter(tags=["pages"], include_in_schema=False)


def _unavailable(request: Request, exc: ShareLinkUnavailable) -> HTMLResponse:
    context = {"message": exc.message}
    return render(request, "share/unavailable.html", context, status_code=exc.status_code, headers=NO_STORE)


def _allow_framing(request: Request, origins: list[str]) -> None:
    """The listed sites may show this page in an iframe (SecurityHeadersMiddleware reads it)."""
    request.state.frame_ancestors = origins


@router.get("/s/{token}", name="share_page")
def share_page(token: str, request: Request, rt: RuntimeDep, chat: str | None = None, embed: bool = False) -> Response:
    """The share link's chat, its password form, or a page saying why it cannot be used."""
    try:
        link = share_service.open_link(rt, token)
    except ShareLinkUnavailable as exc:
        return _unavailable(request, exc)
    _allow_framing(request, link.allowed_origins)
    visitor = visitors.page_visitor(rt, link, request)
    if not visitor.unlocked:
        return render(request, "share/password.html", {"token": token, "embed": embed}, headers=NO_STORE)
    app = get_app(rt, link.app_id)
    lines = []
    if chat is not None:
        try:
            _, messages = share_service.visitor_chat(rt, link, visitor.visitor_id, chat)
            lines = chat_lines(chat, messages, file_links(rt, f"/s/{token}/files/{{id}}", [m.quotes for m in messages]))
        except NotFound:  # somebody else's or a deleted chat: start a new one instead
            chat = None
    base = f"/api/share/{token}"
    context = {
        "app": app,
        "settings": chat_settings_of(app),
        "chats": share_service.visitor_chats(rt, link, visitor.visitor_id),
        "chat_id": chat or secrets.token_urlsafe(12),
        "messages": lines,
        "visitor_token": visitors.sign(rt, visitor),
        "embed": embed,
        "token": token,
        "endpoints": {
            "chat": f"{base}/chat",
            "render": f"{base}/render",
            "chats": f"{base}/chats",
            "link": f"/s/{token}?{'embed=1&' if embed else ''}chat=",
            "new": f"/s/{token}{'?embed=1' if embed else ''}",
        },
    }
    response = render(request, "share/chat.html", context, headers=NO_STORE)
    visitors.remember(response, rt, visitor)
    return response


@router.post("/s/{token}/unlock", name="share_unlock")
def unlock(
    token: str, request: Request, rt: RuntimeDep, password: str = Form(max_length=200), embed: bool = Form(False)
):
    """Check a password link's password; the visitor is then remembered as having it."""
    try:
        link = share_service.open_link(rt, token)
    except ShareLinkUnavailable as exc:
        return _unavailable(request, exc)
    _allow_framing(request, link.allowed_origins)
    visitors.limit_password(request, link)
    if not share_service.password_matches(link, password):
        context = {"token": token, "embed": embed, "error": "That is not this link's password."}
        return render(request, "share/password.html", context, status_code=401, headers=NO_STORE)
    visitor = visitors.page_visitor(rt, link, request)
    response = RedirectResponse(f"/s/{token}{'?embed=1' if embed else ''}", status_code=303)
    visitors.remember(response, rt, visitors.Visitor(link, visitor.visitor_id, True))
    return response


@router.get("/s/{token}/files/{collection_id}", name="share_file")
def share_file(token: str, collection_id: int, request: Request, rt: RuntimeDep) -> Response:
    """A cited document's original file, for whoever may use the link (a password link: once unlocked)."""
    try:
        link = share_service.open_link(rt, token)
    except ShareLinkUnavailable as exc:
        return _unavailable(request, exc)
    if not visitors.page_visitor(rt, link, request).unlocked:
        return render(request, "share/password.html", {"token": token, "embed": False}, status_code=401)
    return file_response(original_file(rt, collection_id, app_id=link.app_id))
