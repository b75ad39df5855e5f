"""Small things the apps, keys and models pages share: redirects after a POST, notices, refused-form messages.

A page that changed something redirects (303) with `?notice=<key>`; the next page shows the fixed,
translated sentence for that key, so a crafted link cannot put words of its own on an admin page.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from kb.errors import KBError
from kb.http.i18n import translate

NOTICES = {
    "app_created": "App created. Try it below, or open it in the chat.",
    "app_saved": "App saved.",
    "app_deleted": "The app, its chats and its API keys were deleted.",
    "key_revoked": "The key was revoked; it is refused from now on.",
}


def notice_text(key: str | None) -> str | None:
    """The English sentence for a notice key from the URL (unknown keys show nothing)."""
    return NOTICES.get(key or "")


def see_other(path: str, notice: str | None = None) -> RedirectResponse:
    """Redirect after a successful POST, with a notice key for the next page."""
    return RedirectResponse(f"{path}?notice={notice}" if notice else path, status_code=303)


def refusal_message(exc: KBError | ValidationError, labels: dict[str, str], lang: str) -> str:
    """One readable sentence for a refused form: the service's message, or each invalid field by its label
    (`labels` maps a field's path to its English label, shown in `lang`)."""
    if isinstance(exc, KBError):
        return exc.message
    parts = []
    for detail in exc.errors():
        path = ".".join(str(part) for part in detail.get("loc", ()))
        name = translate(lang, labels[path]) if path in labels else path.rsplit(".", 1)[-1].replace("_", " ")
        parts.append(f"{name}: {detail.get('msg', 'invalid')}")
    return "; ".join(parts)


def format_time(moment: datetime | None) -> str:
    """A stored time as the admin pages show it: to the minute, in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment is not None else ""
