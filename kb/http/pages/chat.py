"""The chat page `/`: pick an app, ask, watch the answer stream in, open the quotes it cites.

Who may chat here: the admin (the session cookie), like every other page that shows the knowledge bases'
contents; logged out, `/` redirects to the login page. Everybody else chats through an app's share
link (kb/http/pages/share.py), which reuses this page's conversation and rendering.

How an answer arrives: chat.js posts to `/v1/chat/completions` (`stream`, `detail`, `chatId`) with the
session cookie and the CSRF header, the same route and service programs use, and shows the streamed
text as plain text. Once it is complete, the browser sends the text and quotes to `/chat/render`,
which returns the answer rendered here, on the server: Markdown, sanitised, citations as buttons.
Stored conversations are rendered the same way when the page loads.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, Field

from kb.db.store.apps import AppRecord
from kb.db.store.chats import MessageRecord
from kb.http.deps import AdminDep, RuntimeDep
from kb.http.pages.markdown import render_answer
from kb.http.pages.templating import render
from kb.rag.answer import STOPPED
from kb.services import apps as app_service
from kb.services import chats as chat_service
from kb.services import originals

router = APIRouter(tags=["pages"], include_in_schema=False)

HISTORY_SIZE = 50
NO_STORE = {"Cache-Control": "no-store"}  # conversations are private to the admin's browser


@dataclass(frozen=True)
class QuoteView:
    number: int
    source: str
    page: int | None
    text: str
    cited: bool
    score: float | None
    file_url: str | None = None  # the original file, at the cited page for a PDF


@dataclass(frozen=True)
class AnswerView:
    """An answer ready for `chat/_answer.html`: safe HTML, its quotes, and where feedback goes."""

    html: Markup
    quotes: list[QuoteView]
    chat_id: str | None = None
    message_id: int | None = None
    feedback: str | None = None
    comment: str | None = None
    stopped: bool = False


@dataclass(frozen=True)
class ChatLine:
    role: str
    text: str
    answer: AnswerView | None = None


class QuoteIn(BaseModel):
    """A quote as the stream's last chunk lists it (`detail: true`); other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    number: int = Field(ge=1, le=1000)
    collection_id: int | None = None
    source: str = Field(default="", max_length=2000)
    page: int | None = None
    text: str = Field(default="", max_length=100_000)
    cited: bool = False
    score: float | None = None


class RenderRequest(BaseModel):
    """A finished answer to render: its text and quotes, and the stored message it became (if kept)."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=200_000)
    quotes: list[QuoteIn] = Field(default_factory=list, max_length=200)
    chat_id: str | None = Field(default=None, max_length=100)
    message_id: int | None = None
    stopped: bool = False


ADMIN_FILE_LINK = "/api/collections/{id}/file"


def _file_url(quote: dict, file_link: str, with_files: set[int]) -> str | None:
    collection_id = quote.get("collection_id")
    if collection_id not in with_files:
        return None
    page = f"#page={quote['page']}" if quote.get("page") else ""
    return file_link.replace("{id}", str(collection_id)) + page


def answer_view(
    text: str,
    quotes: Sequence[dict],
    *,
    chat_id: str | None = None,
    message_id: int | None = None,
    feedback: str | None = None,
    comment: str | None = None,
    stopped: bool = False,
    files: tuple[str, set[int]] = (ADMIN_FILE_LINK, set()),
) -> AnswerView:
    """Render an answer's Markdown safely; its `[n]` become buttons for the quotes it was given.

    `files` is (link template with `{id}`, the collections that have an original file to open)."""
    views = [
        QuoteView(
            q["number"],
            q.get("source") or "",
            q.get("page"),
            q.get("text") or "",
            bool(q.get("cited")),
            q.get("score"),
            _file_url(q, *files),
        )
        for q in quotes
    ]
    html = render_answer(text, {view.number for view in views})
    return AnswerView(html, views, chat_id, message_id, feedback, comment, stopped)


def file_links(rt, file_link: str, messages: Sequence[dict]) -> tuple[str, set[int]]:
    """The link template and which quoted documents (of these quote lists) have files."""
    ids = {quote.get("collection_id") for quotes in messages for quote in quotes} - {None}
    return file_link, originals.with_files(rt, ids)


def chat_lines(
    chat_id: str, messages: Sequence[MessageRecord], files: tuple[str, set[int]] = (ADMIN_FILE_LINK, set())
) -> list[ChatLine]:
    """A stored conversation as the page shows it."""
    lines = []
    for message in messages:
        if message.role != "assistant":
            lines.append(ChatLine(message.role, message.content))
            continue
        feedback = {1: "up", -1: "down"}.get(message.feedback)
        view = answer_view(
            message.content,
            message.quotes,
            chat_id=chat_id,
            message_id=message.id,
            feedback=feedback,
            comment=message.feedback_comment,
            stopped=message.timings.get("finish_reason") == STOPPED,
            files=files,
        )
        lines.append(ChatLine("assistant", message.content, view))
    return lines


def _chosen_app(apps: list[AppRecord], app_id: int | None) -> AppRecord | None:
    return next((app for app in apps if app.id == app_id), apps[0] if apps else None)


@router.get("/", name="chat")
def chat_page(
    request: Request,
    principal: AdminDep,
    rt: RuntimeDep,
    app: int | None = None,
    chat: str | None = None,
) -> HTMLResponse:
    """The chat: an app's conversations in the sidebar, one conversation (stored or new) in the middle."""
    apps = app_service.list_apps(rt)
    lines: list[ChatLine] = []
    if chat is not None:
        stored, messages = chat_service.get_chat(rt.db, principal, chat)
        app = stored.app_id  # a chat link opens its own app
        lines = chat_lines(stored.id, messages, file_links(rt, ADMIN_FILE_LINK, [m.quotes for m in messages]))
    chosen = _chosen_app(apps, app)
    chats = []
    if chosen is not None:
        chats, _ = chat_service.list_chats(rt.db, principal, app_id=chosen.id, limit=HISTORY_SIZE)
    context = {
        "apps": apps,
        "app": chosen,
        "chats": chats,
        "settings": app_service.chat_settings_of(chosen) if chosen else None,
        "chat_id": chat or secrets.token_urlsafe(12),  # a new conversation's id, used once its first answer is kept
        "messages": lines,
    }
    return render(request, "chat.html", context, headers=NO_STORE)


@router.post("/chat/render", name="chat_render")
def render_finished_answer(body: RenderRequest, request: Request, rt: RuntimeDep, _: AdminDep) -> HTMLResponse:
    """The server-side rendering of an answer that just finished streaming (an HTML fragment)."""
    return render_fragment(request, body, rt, ADMIN_FILE_LINK)


def render_fragment(request: Request, body: RenderRequest, rt, file_link: str) -> HTMLResponse:
    """A finished (or stopped) answer as the `chat/_answer.html` fragment."""
    quotes = [quote.model_dump() for quote in body.quotes]
    files = file_links(rt, file_link, [quotes])
    view = answer_view(
        body.text, quotes, chat_id=body.chat_id, message_id=body.message_id, stopped=body.stopped, files=files
    )
    return render(request, "chat/_answer.html", {"view": view}, headers=NO_STORE)
