"""CSRF checks. `csrf_protect` runs before every route (an app-wide dependency): a state-changing
request sent with one of our cookies must carry the browser's token, as the form field `csrf_token`
or the `X-CSRF-Token` header. A request to `/api` or `/v1` with a bearer API key is exempt (the key
authenticates it, and browsers never add that header on their own); a page is not, whatever headers come. A request with no cookie at all
gains nothing from the browser either, except on the login and first-run forms, which therefore
use `require_csrf` and always check.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from kb.errors import Forbidden
from kb.http.security.auth import bearer_token

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
KEY_AUTHENTICATED = ("/api/", "/v1/")  # where a bearer key, when sent, is who the caller is
CSRF_MESSAGE = "This form's security token is missing or out of date. Reload the page and try again."


async def _sent_token(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header is not None:
        return header
    if request.headers.get("content-type", "").startswith(_FORM_TYPES):
        # Starlette caches the parsed form, so the route's own Form() fields read the same one.
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def _check(request: Request) -> None:
    expected = getattr(request.state, "csrf_token", "")
    sent = await _sent_token(request)
    if not expected or sent is None or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Forbidden(CSRF_MESSAGE, code="csrf_failed")


async def csrf_protect(request: Request) -> None:
    """App-wide dependency: state-changing requests sent with our cookies need the CSRF token.

    Only `/api` and `/v1` let a bearer key, rather than the cookie, authenticate the request; pages
    always use the session cookie, so an Authorization header exempts nothing there.
    """
    if request.method not in UNSAFE_METHODS:
        return
    if bearer_token(request) is not None and request.url.path.startswith(KEY_AUTHENTICATED):
        return
    web = getattr(request.state, "web", None)
    if web is not None and web.has_browser_cookie:
        await _check(request)


async def require_csrf(request: Request) -> None:
    """For forms used before login (login, first run): the token is checked even without cookies."""
    if request.method in UNSAFE_METHODS:
        await _check(request)
