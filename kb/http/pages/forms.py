"""What the admin pages share: reading HTML forms into the API's shapes, refused-form messages, and notices.

A page that changed something redirects (303) with `?notice=<key>`; the next page shows the fixed,
translated sentence for that key. Only keys travel in the URL, never text, so a crafted link cannot
put words of its own on an admin page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ValidationError

from kb.errors import BadRequest, KBError
from kb.http.i18n import translate

NOTICES = {
    "dataset_created": "Dataset created. Add documents to it below.",
    "dataset_saved": "Settings saved. New chunk settings apply to documents added from now on.",
    "dataset_deleted": "The dataset and everything in it were deleted.",
    "reembed_queued": "Re-embedding queued. Searches use the current vectors until the new ones are all ready.",
    "reembed_cancelled": "Re-embedding cancelled. The dataset keeps its vectors and its embedding model.",
    "source_queued": "Added; it is being processed.",
    "source_duplicate": "This content is already in the dataset; nothing new was added.",
    "collection_retried": "Queued again.",
    "collection_deleted": "The document and its chunks were deleted.",
    "chunk_saved": "Chunk saved and re-embedded.",
    "chunk_deleted": "Chunk deleted.",
    "pair_added": "Q/A pair added; it is searchable now.",
    "app_created": "App created. Try it below, or open it in the chat.",
    "app_saved": "App saved.",
    "app_deleted": "The app, its chats and its API keys were deleted.",
    "key_revoked": "The key was revoked; it is refused from now on.",
    "link_created": "Share link created. Copy its address or embed code below.",
    "link_revoked": "The share link was turned off; its chats stay in the logs.",
    "annotated": "Correction saved as a Q/A pair; the app finds it from now on.",
}


@dataclass(frozen=True)
class Refused:
    """A form the service refused: which one (e.g. "text", "pair", "edit-12"), what was typed, and why."""

    form: str
    values: BaseModel
    message: str
    status_code: int

    @classmethod
    def of(cls, form: str, values: BaseModel, exc: Exception, labels: dict[str, str] | None = None) -> Refused:
        """From a ValidationError (400, fields named by their labels) or a KBError (its status and message)."""
        if isinstance(exc, KBError):
            return cls(form, values, exc.message, exc.status_code)
        if isinstance(exc, ValidationError):
            return cls(form, values, validation_message(exc, labels), 400)
        raise TypeError(f"not a form error: {exc!r}")


def notice_text(key: str | None) -> str | None:
    """The English sentence for a notice key from the URL (unknown keys show nothing)."""
    return NOTICES.get(key or "")


def path_for(request: Request, name: str, **params: object) -> str:
    """The path (not the absolute URL, which a proxy in front may not serve) of a named route."""
    return str(request.app.url_path_for(name, **{k: str(v) for k, v in params.items()}))


def see_other(path: str, **query: object) -> RedirectResponse:
    """Redirect after a successful POST; query values that are None are left out."""
    params = {k: v for k, v in query.items() if v is not None and v != ""}
    return RedirectResponse(f"{path}?{urlencode(params)}" if params else path, status_code=303)


def validation_message(error: ValidationError, labels: dict[str, str] | None = None, lang: str | None = None) -> str:
    """One readable sentence from a pydantic error, naming fields as the form labels them (in `lang`, if given)."""
    labels = labels or {}
    parts = []
    for detail in error.errors():
        field = ".".join(str(p) for p in detail.get("loc", ()))
        if field in labels:
            name = translate(lang, labels[field]) if lang else labels[field]
        else:
            name = field.rsplit(".", 1)[-1].replace("_", " ")
        parts.append(f"{name}: {detail.get('msg', 'invalid')}")
    return "; ".join(parts)


def refusal_message(exc: KBError | ValidationError, labels: dict[str, str], lang: str) -> str:
    """One readable sentence for a refused form: the service's message, or each invalid field by its label."""
    return exc.message if isinstance(exc, KBError) else validation_message(exc, labels, lang)


def format_time(moment: datetime | None) -> str:
    """A stored time as the admin pages show it: to the minute, in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment is not None else ""


def form_int(value: str | None, field: str, default: int | None = None) -> int | None:
    """A whole number typed in a form field (blank gives `default`)."""
    if value is None or not value.strip():
        return default
    try:
        return int(value.strip())
    except ValueError as exc:
        raise BadRequest(f"{field} must be a whole number, not '{value.strip()[:40]}'.", code="invalid_form") from exc


def form_float(value: str | None, field: str, default: float | None = None) -> float | None:
    """A number typed in a form field (blank gives `default`)."""
    if value is None or not value.strip():
        return default
    try:
        return float(value.strip().replace(",", "."))
    except ValueError as exc:
        raise BadRequest(f"{field} must be a number, not '{value.strip()[:40]}'.", code="invalid_form") from exc


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def parse_separators(text: str) -> list[str] | None:
    """Custom separators typed one per line; `\\n`, `\\t` and `\\\\` stand for a line break, a tab, a backslash."""
    separators = []
    for line in text.splitlines():
        if not line:
            continue
        out, chars = [], iter(line)
        for char in chars:
            if char == "\\":
                following = next(chars, "")
                out.append(_ESCAPES.get(following, "\\" + following))
            else:
                out.append(char)
        separators.append("".join(out))
    return separators or None


def show_separators(separators: list[str] | None) -> str:
    """The separators as `parse_separators` reads them back, one per line."""
    return "\n".join(s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t") for s in separators or [])
