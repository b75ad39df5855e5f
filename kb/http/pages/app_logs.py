"""Admin pages for an app's chat logs: conversations filtered by feedback, date and share link, one conversation
with its feedback, and the annotation form that turns a corrected answer into a Q/A pair."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ValidationError

from kb.errors import KBError
from kb.http.deps import RuntimeDep
from kb.http.i18n import request_language
from kb.http.pages.admin import render_admin
from kb.http.pages.chat import ADMIN_FILE_LINK, chat_lines, file_links
from kb.http.pages.forms import notice_text, path_for, refusal_message, see_other
from kb.http.security.auth import require_admin
from kb.services import chat_logs
from kb.services import datasets as dataset_service
from kb.services import share_links as share_service
from kb.services.apps import get_app

router = APIRouter(tags=["pages"], include_in_schema=False, dependencies=[Depends(require_admin)])
PAGE_SIZE = 50


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None  # a malformed date in the address filters nothing


@router.get("/admin/apps/{app_id}/logs", name="admin_app_logs")
def logs_page(
    app_id: int,
    request: Request,
    rt: RuntimeDep,
    feedback: str | None = None,
    since: str | None = None,
    until: str | None = None,
    link: int | None = None,
    offset: int = 0,
) -> HTMLResponse:
    """The app's conversations, newest first, narrowed by the filters in the address."""
    app = get_app(rt, app_id)
    chosen = feedback if feedback in chat_logs.FEEDBACK_FILTERS else None
    query = chat_logs.LogQuery(app_id, chosen, _day(since), _day(until), link, max(offset, 0), PAGE_SIZE)
    chats, total = chat_logs.list_logs(rt, query)
    links = {item.id: item for item in share_service.list_links(rt, app_id)}
    context = {
        "app": app,
        "chats": chats,
        "total": total,
        "links": links,
        "query": query,
        "filters": {"feedback": chosen or "", "since": since or "", "until": until or "", "link": link},
    }
    return render_admin(request, "admin/app_logs.html", context, section="admin_apps")


class AnnotationForm(BaseModel):
    question: str = ""
    answer: str = ""
    dataset_id: int = 0


def _conversation_page(request: Request, rt, app_id: int, chat_id: str, error: str | None = None, status: int = 200):
    app = get_app(rt, app_id)
    chat, messages = chat_logs.app_conversation(rt, app_id, chat_id)
    datasets = [dataset for dataset in dataset_service.list_datasets(rt) if dataset.id in app.dataset_ids]
    context = {
        "app": app,
        "chat": chat,
        "lines": chat_lines(chat.id, messages, file_links(rt, ADMIN_FILE_LINK, [m.quotes for m in messages])),
        "messages": messages,
        "datasets": datasets,
        "error": error,
        "notice": notice_text(request.query_params.get("notice")),
    }
    return render_admin(request, "admin/app_log_chat.html", context, section="admin_apps", status_code=status)


@router.get("/admin/apps/{app_id}/logs/{chat_id}", name="admin_app_log_chat")
def conversation_page(app_id: int, chat_id: str, request: Request, rt: RuntimeDep) -> HTMLResponse:
    return _conversation_page(request, rt, app_id, chat_id)


@router.post("/admin/apps/{app_id}/logs/{chat_id}/annotate", name="admin_app_annotate")
def annotate(
    app_id: int, chat_id: str, request: Request, form: Annotated[AnnotationForm, Form()], rt: RuntimeDep
) -> Response:
    """Save the admin's correct answer as a Q/A pair in one of the app's datasets."""
    try:
        chat_logs.annotate(rt, app_id, chat_id, form.dataset_id, form.question.strip(), form.answer.strip())
    except (ValidationError, KBError) as exc:
        message = refusal_message(exc, {"q": "Question", "a": "Correct answer"}, request_language(request))
        return _conversation_page(request, rt, app_id, chat_id, message, getattr(exc, "status_code", 400))
    return see_other(path_for(request, "admin_app_log_chat", app_id=app_id, chat_id=chat_id), notice="annotated")
