"""The Jinja2 environment shared by every page: autoescaping on, translations, CSRF token."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from kb.http.i18n import LANGUAGES, request_language, translate, translate_message
from kb.services.search import MAX_QUERY_CHARS

WEB_DIR = Path(__file__).resolve().parents[3] / "web"
templates = Jinja2Templates(directory=str(WEB_DIR / "templates"))
templates.env.globals["max_question_chars"] = MAX_QUERY_CHARS  # the question box says what the server accepts


def render(
    request: Request, template: str, context: dict | None = None, *, status_code: int = 200, headers=None
) -> HTMLResponse:
    """Render a page in the caller's language; every template gets `_`, `lang` and `csrf_token`."""
    lang = request_language(request)
    ctx = {
        "request": request,
        "lang": lang,
        "languages": LANGUAGES,
        "_": lambda text, **values: translate(lang, text, **values),
        "_msg": lambda text: translate_message(lang, text),  # stored English messages (failure reasons)
        "csrf_token": getattr(request.state, "csrf_token", ""),
        "admin": getattr(request.state, "session_principal", None) is not None,
    }
    ctx.update(context or {})
    return templates.TemplateResponse(request, template, ctx, status_code=status_code, headers=headers)


def render_error_page(request: Request, status: int, message: str, *, headers=None) -> HTMLResponse:
    # Fixed messages that have a translation are shown in the reader's language, others as raised.
    message = translate(request_language(request), message)
    return render(request, "error.html", {"status": status, "message": message}, status_code=status, headers=headers)
