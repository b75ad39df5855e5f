"""Admin pages for apps: the list, create, edit (with a "try it" chat), delete after an in-page confirmation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ValidationError

from kb.db.store.apps import AppRecord
from kb.errors import KBError
from kb.http.deps import RuntimeDep
from kb.http.i18n import request_language
from kb.http.pages.admin import render_admin
from kb.http.pages.forms import notice_text, path_for, refusal_message, see_other
from kb.http.security.auth import require_admin
from kb.runtime import Runtime
from kb.services import apps as app_service
from kb.services import datasets as dataset_service
from kb.services.apps import AppCreate, ChatSettings, SearchSettings

router = APIRouter(tags=["pages"], include_in_schema=False, dependencies=[Depends(require_admin)])

SECTION = "admin_apps"
SEARCH_MODES = ("hybrid", "vector", "fulltext")
FIELD_LABELS = {
    "name": "Name",
    "description": "Description",
    "system_prompt": "System prompt",
    "chat_model": "Chat model",
    "dataset_ids": "Datasets",
    "search.mode": "Search mode",
    "search.limit": "Quotes to retrieve",
    "search.min_score": "Minimum score",
    "search.max_tokens": "Quote token budget",
    "not_found_reply": "Reply when nothing is found",
    "chat.temperature": "Temperature",
    "chat.max_tokens": "Longest answer (tokens)",
    "chat.opening_message": "Opening message",
    "chat.suggested_questions": "Suggested questions",
}


class AppForm(BaseModel):
    """The app form as typed, so a refused form comes back with the user's input."""

    name: str = ""
    description: str = ""
    system_prompt: str = ""
    chat_model: str = ""
    dataset_ids: list[str] = []
    mode: str = "hybrid"
    limit: str = ""
    min_score: str = ""
    max_tokens: str = ""
    rerank: bool = False
    not_found_reply: str = ""
    allow_general_knowledge: bool = False
    temperature: str = ""
    answer_tokens: str = ""
    opening_message: str = ""
    suggested_questions: str = ""  # one per line

    @classmethod
    def of(cls, app: AppRecord | None) -> AppForm:
        """The form filled from a stored app, or with the defaults for a new one."""
        search = app_service.search_settings_of(app) if app else SearchSettings()
        chat = app_service.chat_settings_of(app) if app else ChatSettings()
        values = {
            "temperature": f"{chat.temperature:g}",
            "answer_tokens": str(chat.max_tokens or ""),
            "opening_message": chat.opening_message,
            "suggested_questions": "\n".join(chat.suggested_questions),
            "mode": search.mode,
            "limit": str(search.limit),
            "min_score": f"{search.min_score:g}",
            "max_tokens": str(search.max_tokens),
            "rerank": search.rerank,
        }
        if app is not None:
            values.update(
                name=app.name,
                description=app.description,
                system_prompt=app.system_prompt,
                chat_model=app.chat_model or "",
                dataset_ids=[str(i) for i in app.dataset_ids],
                not_found_reply=app.not_found_reply or "",
                allow_general_knowledge=app.allow_general_knowledge,
            )
        return cls(**values)

    def to_app(self) -> AppCreate:
        """The typed app; raises ValidationError naming the field. Blank numbers take the defaults."""
        numbers = {"limit": self.limit, "min_score": self.min_score, "max_tokens": self.max_tokens}
        search = {"mode": self.mode, "rerank": self.rerank, **{k: v.strip() for k, v in numbers.items() if v.strip()}}
        return AppCreate.model_validate(
            {
                "name": self.name.strip(),
                "description": self.description.strip(),
                "system_prompt": self.system_prompt.strip(),
                "chat_model": self.chat_model or None,
                "dataset_ids": self.dataset_ids,
                "search": search,
                "not_found_reply": self.not_found_reply.strip() or None,
                "allow_general_knowledge": self.allow_general_knowledge,
                "chat": {
                    "temperature": self.temperature.strip() or 0,
                    "max_tokens": self.answer_tokens.strip() or None,
                    "opening_message": self.opening_message.strip(),
                    "suggested_questions": self.suggested_questions.splitlines(),
                },
            }
        )


def _form_page(
    request: Request,
    rt: Runtime,
    form: AppForm,
    app: AppRecord | None,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context = {
        "app": app,
        "form": form,
        "error": error,
        "notice": notice_text(request.query_params.get("notice")),
        "chat_models": rt.registry.chat_names(),
        "default_chat_model": rt.settings.chat_model,
        "datasets": dataset_service.list_datasets(rt),
        "search_modes": SEARCH_MODES,
        "has_reranker": bool(rt.settings.rerank_model) or form.rerank,
    }
    return render_admin(request, "admin/app_form.html", context, section=SECTION, status_code=status_code)


def _refused(
    request: Request, rt: Runtime, form: AppForm, app: AppRecord | None, exc: ValidationError | KBError
) -> HTMLResponse:
    """The form again, with what was typed and why the service refused it."""
    message = refusal_message(exc, FIELD_LABELS, request_language(request))
    return _form_page(request, rt, form, app, error=message, status_code=getattr(exc, "status_code", 400))


@router.get("/admin/apps", name="admin_apps")
def apps_page(request: Request, rt: RuntimeDep) -> HTMLResponse:
    datasets = {dataset.id: dataset.name for dataset in dataset_service.list_datasets(rt)}
    context = {
        "apps": app_service.list_apps(rt),
        "dataset_names": datasets,
        "default_chat_model": rt.settings.chat_model,
        "notice": notice_text(request.query_params.get("notice")),
    }
    return render_admin(request, "admin/apps.html", context, section=SECTION)


@router.get("/admin/apps/new", name="admin_app_new")
def new_app_page(request: Request, rt: RuntimeDep) -> HTMLResponse:
    return _form_page(request, rt, AppForm.of(None), None)


@router.post("/admin/apps/new")
def create_app(request: Request, form: Annotated[AppForm, Form()], rt: RuntimeDep) -> Response:
    try:
        record = app_service.create_app_record(rt, form.to_app())
    except (ValidationError, KBError) as exc:
        return _refused(request, rt, form, None, exc)
    return see_other(path_for(request, "admin_app", app_id=record.id), notice="app_created")


@router.get("/admin/apps/{app_id}", name="admin_app")
def app_page(app_id: int, request: Request, rt: RuntimeDep) -> HTMLResponse:
    app = app_service.get_app(rt, app_id)
    return _form_page(request, rt, AppForm.of(app), app)


@router.post("/admin/apps/{app_id}")
def save_app(
    app_id: int,
    request: Request,
    form: Annotated[AppForm, Form()],
    rt: RuntimeDep,
) -> Response:
    app = app_service.get_app(rt, app_id)
    try:
        changes = app_service.AppUpdate.model_validate(form.to_app().model_dump())
        app_service.update_app(rt, app_id, changes)
    except (ValidationError, KBError) as exc:
        return _refused(request, rt, form, app, exc)
    return see_other(path_for(request, "admin_app", app_id=app_id), notice="app_saved")


@router.post("/admin/apps/{app_id}/delete", name="admin_app_delete")
def delete_app(app_id: int, request: Request, rt: RuntimeDep) -> Response:
    app_service.delete_app(rt, app_id)
    return see_other(path_for(request, "admin_apps"), notice="app_deleted")
