"""Admin pages for an app's share links: create (password, expiry, rate limit, embedding sites), list with
usage, revoke, and the snippets that embed the chat on another site."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ValidationError

from kb.errors import KBError
from kb.http.deps import RuntimeDep
from kb.http.i18n import request_language
from kb.http.pages.admin import render_admin
from kb.http.pages.forms import form_int, notice_text, path_for, refusal_message, see_other
from kb.http.security.auth import require_admin
from kb.services import share_links as share_service
from kb.services.apps import get_app
from kb.services.share_links import ShareLinkCreate

router = APIRouter(tags=["pages"], include_in_schema=False, dependencies=[Depends(require_admin)])
LABELS = {
    "name": "Name",
    "password": "Password",
    "expires_at": "Expires",
    "rate_limit_per_minute": "Questions per minute",
    "allowed_origins": "Sites that may embed it",
}


class ShareForm(BaseModel):
    name: str = "Share link"
    password: str = ""
    expires_in_days: str = ""
    rate_limit_per_minute: str = ""
    allowed_origins: str = ""

    def to_link(self) -> ShareLinkCreate:
        days = form_int(self.expires_in_days, "expires_in_days")
        return ShareLinkCreate.model_validate(
            {
                "name": self.name.strip() or "Share link",
                "password": self.password or None,
                "expires_at": datetime.now(UTC) + timedelta(days=days) if days else None,
                "rate_limit_per_minute": form_int(self.rate_limit_per_minute, "rate_limit_per_minute"),
                "allowed_origins": self.allowed_origins.split(),
            }
        )


def _page(request: Request, rt, app_id: int, form: ShareForm, error: str | None = None, status: int = 200):
    context = {
        "app": get_app(rt, app_id),
        "links": share_service.list_links(rt, app_id),
        "form": form,
        "error": error,
        "notice": notice_text(request.query_params.get("notice")),
        "origin": str(request.base_url).rstrip("/"),
        "now": datetime.now(UTC),
    }
    return render_admin(request, "admin/app_share.html", context, section="admin_apps", status_code=status)


@router.get("/admin/apps/{app_id}/share", name="admin_app_share")
def share_page(app_id: int, request: Request, rt: RuntimeDep) -> HTMLResponse:
    return _page(request, rt, app_id, ShareForm())


@router.post("/admin/apps/{app_id}/share")
def create_link(app_id: int, request: Request, form: Annotated[ShareForm, Form()], rt: RuntimeDep) -> Response:
    try:
        share_service.create_link(rt, app_id, form.to_link())
    except (ValidationError, KBError) as exc:
        message = refusal_message(exc, LABELS, request_language(request))
        return _page(request, rt, app_id, form, message, getattr(exc, "status_code", 400))
    return see_other(path_for(request, "admin_app_share", app_id=app_id), notice="link_created")


@router.post("/admin/share-links/{link_id}/revoke", name="admin_link_revoke")
def revoke_link(link_id: int, request: Request, rt: RuntimeDep) -> Response:
    link = share_service.revoke_link(rt, link_id)
    return see_other(path_for(request, "admin_app_share", app_id=link.app_id), notice="link_revoked")
