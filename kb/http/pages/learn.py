"""`/learn`: the two-token, three-context language model trained live in the page (no login)."""

from __future__ import annotations

import threading
from functools import cache

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from kb.errors import BadRequest, RateLimited
from kb.explain import (
    DEFAULT_SEQUENCE,
    DEFAULT_STEPS,
    explain_figures,
    explain_texts,
    train_tiny_gpt,
    validate_explain_input,
)
from kb.http.i18n import request_language
from kb.http.pages.templating import render
from kb.http.security.ratelimit import limit_learn

router = APIRouter()

# The page needs no login, so bound what one visitor can ask of the CPU: fewer steps than the
# CLI allows, one training run at a time (others are refused at once, never left holding a server
# thread), a per-address rate limit, and the default model trained once per process.
PAGE_MAX_STEPS = 1000
_training = threading.Semaphore(1)


@cache
def _default_result():
    return train_tiny_gpt()


def _train_for_page(sequence: str, steps: str | int):
    sequence, steps = validate_explain_input(sequence, steps)
    if steps > PAGE_MAX_STEPS:
        raise BadRequest(f"At most {PAGE_MAX_STEPS} training steps on this page (asked for {steps}).", code="bad_steps")
    if (sequence, steps) == (DEFAULT_SEQUENCE, DEFAULT_STEPS):
        return _default_result()
    if not _training.acquire(blocking=False):
        raise RateLimited(
            "Another training run is in progress; try again in a few seconds.", headers={"Retry-After": "5"}
        )
    try:
        return train_tiny_gpt(sequence, steps)
    finally:
        _training.release()


@router.get("/learn", response_class=HTMLResponse, include_in_schema=False)
def learn(request: Request, sequence: str = DEFAULT_SEQUENCE, steps: str = str(DEFAULT_STEPS)) -> HTMLResponse:
    lang = request_language(request)
    error, status, headers = None, 200, None
    try:
        limit_learn(request)
        result = _train_for_page(sequence, steps)
    except (BadRequest, RateLimited) as exc:
        error, status, headers = exc.message, exc.status_code, exc.headers or None
        result = _default_result()  # show the default model next to the message, so the page still teaches
    figures = explain_figures(result, lang)
    context = {
        "texts": explain_texts(result, lang),
        "result": result,
        "error": error,
        "form_sequence": sequence[:200],
        "form_steps": steps[:10],
        "max_steps": PAGE_MAX_STEPS,
        # Our own SVG renderer escapes every text it writes (tests parse the output as XML).
        "before_svg": Markup(figures.before_svg),
        "after_svg": Markup(figures.after_svg),
        "training_svg": Markup(figures.training_svg),
    }
    return render(request, "learn.html", context, status_code=status, headers=headers)
