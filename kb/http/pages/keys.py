"""Admin pages for API keys (create: shown once; list; revoke) and the usage table per key and model."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ValidationError

from kb.errors import BadRequest, KBError
from kb.http.deps import RuntimeDep
from kb.http.i18n import request_language
from kb.http.pages.admin import render_admin
from kb.http.pages.forms import format_time, notice_text, path_for, refusal_message, see_other
from kb.http.security.auth import require_admin
from kb.runtime import Runtime
from kb.schemas import KeyCreate
from kb.services import apps as app_service
from kb.services import keys as key_service
from kb.services.keys import NewKey

router = APIRouter(tags=["pages"], include_in_schema=False, dependencies=[Depends(require_admin)])

FIELD_LABELS = {
    "name": "Name",
    "app_id": "Scope",
    "expires_in_days": "Expires after (days)",
    "token_quota": "Token quota",
}
USAGE_PRESETS = (1, 7, 30, 90)


class KeyForm(BaseModel):
    """The new-key form as typed; `scope` is "all" or an app id."""

    name: str = ""
    scope: str = "all"
    expires_in_days: str = ""
    token_quota: str = ""

    def to_key(self) -> KeyCreate:
        """The typed request; raises ValidationError naming the field. Blank means never / unlimited."""
        return KeyCreate.model_validate(
            {
                "name": self.name.strip(),
                "app_id": None if self.scope == "all" else self.scope,
                "expires_in_days": self.expires_in_days.strip() or None,
                "token_quota": self.token_quota.strip() or None,
            }
        )


def _keys_page(
    request: Request,
    rt: Runtime,
    *,
    form: KeyForm | None = None,
    created: NewKey | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context = {
        "keys": key_service.list_keys(rt.db),
        "apps": {app.id: app.name for app in app_service.list_apps(rt)},
        "form": form or KeyForm(),
        "created": created,
        "error": error,
        "notice": notice_text(request.query_params.get("notice")),
        "now": datetime.now(UTC),
        "when": format_time,
    }
    return render_admin(request, "admin/keys.html", context, section="admin_keys", status_code=status_code)


@router.get("/admin/keys", name="admin_keys")
def keys_page(request: Request, rt: RuntimeDep) -> HTMLResponse:
    return _keys_page(request, rt)


@router.post("/admin/keys")
def create_key(request: Request, form: Annotated[KeyForm, Form()], rt: RuntimeDep) -> HTMLResponse:
    """Create a key and show it in this response only: it is never stored in clear, nor shown again."""
    try:
        created = key_service.create_key(rt.db, **form.to_key().model_dump())
    except (ValidationError, KBError) as exc:
        message = refusal_message(exc, FIELD_LABELS, request_language(request))
        return _keys_page(request, rt, form=form, error=message, status_code=getattr(exc, "status_code", 400))
    return _keys_page(request, rt, created=created)


@router.post("/admin/keys/{key_id}/revoke", name="admin_key_revoke")
def revoke_key(key_id: int, request: Request, rt: RuntimeDep) -> Response:
    key_service.revoke_key(rt.db, key_id)
    return see_other(path_for(request, "admin_keys"), notice="key_revoked")


def usage_period(since: str | None, until: str | None, days: int | None) -> tuple[datetime | None, datetime | None]:
    """The period a usage form names: the last `days` days, or from one day to another (both included)."""

    def day(value: str, label: str) -> date:
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise BadRequest(
                f"{label} must be a date like 2025-01-31, not '{value[:40]}'", code="invalid_date"
            ) from exc

    if days is not None and not since and not until:
        if not 1 <= days <= 36500:
            raise BadRequest("the period must be between 1 and 36,500 days", code="invalid_period")
        now = datetime.now(UTC)
        return now - timedelta(days=days), now
    start = datetime.combine(day(since, "From"), time(), UTC) if since else None
    try:
        end = datetime.combine(day(until, "To"), time(), UTC) + timedelta(days=1) if until else None
    except OverflowError as exc:  # 9999-12-31: the day after it is no date
        raise BadRequest("To must be a date before 9999-12-31", code="invalid_date") from exc
    return start, end


@router.get("/admin/usage", name="admin_usage")
def usage_page(
    request: Request,
    rt: RuntimeDep,
    since: str | None = None,
    until: str | None = None,
    days: int | None = None,
) -> HTMLResponse:
    """Requests, tokens, latency and errors per key and model over a period (the last 30 days by default)."""
    error, status_code = None, 200
    try:
        start, end = usage_period(since, until, days)
        report = key_service.usage_report(rt.db, since=start, until=end)
    except KBError as exc:
        error, status_code = exc.message, exc.status_code
        report = key_service.usage_report(rt.db)
    context = {
        "report": report,
        "error": error,
        "presets": USAGE_PRESETS,
        "days": days if not since and not until else None,
        "since_value": since or "",
        "until_value": until or "",
        "when": format_time,
    }
    return render_admin(request, "admin/usage.html", context, section="admin_usage", status_code=status_code)
