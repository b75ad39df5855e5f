"""The admin session: a signed cookie, read on every request by a middleware that sets
`request.state.session_principal` (a valid session) and `request.state.csrf_token` (always).

The CSRF token is an HMAC of the session id, so it needs no storage and dies with the session.
Before login the token is bound the same way to a random pre-session cookie (`kb_csrf`, HttpOnly,
set on HTML responses), which protects the login and first-run forms (signed double submit).
The session cookie also carries the password's version: changing the password ends older sessions.
Each session id is also kept (hashed) in the database, so logging out ends it for good.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from http.cookies import SimpleCookie

import anyio
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kb.http.deps import app_runtime
from kb.http.i18n import LANG_COOKIE, LANGUAGES
from kb.principal import Principal
from kb.runtime import Runtime
from kb.services import admin as admin_service

log = logging.getLogger(__name__)

SESSION_COOKIE = "kb_session"
CSRF_COOKIE = "kb_csrf"
LANG_COOKIE_SECONDS = 365 * 24 * 3600
_PRE_SESSION_VALUE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
_SKIPPED_PREFIXES = ("/static/",)


def cookie_header(name: str, value: str, *, max_age: int | None, http_only: bool = True, secure: bool = False) -> str:
    """One Set-Cookie value: path /, SameSite=Lax; `max_age=0` deletes the cookie."""
    cookie: SimpleCookie = SimpleCookie()
    cookie[name] = value
    morsel = cookie[name]
    morsel["path"] = "/"
    morsel["samesite"] = "Lax"
    if max_age is not None:
        morsel["max-age"] = max_age
    if http_only:
        morsel["httponly"] = True
    if secure:
        morsel["secure"] = True
    return morsel.OutputString()


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="kb.admin-session")


def _derive_token(secret: str, purpose: str, value: str) -> str:
    return hmac.new(secret.encode(), f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def _session_seconds(settings) -> int:
    return int(settings.session_hours * 3600)


@dataclass
class WebSession:
    """What the middleware learned about the browser behind one request."""

    principal: Principal | None = None
    csrf_token: str = ""
    # The browser sent one of our auth cookies, so a forged cross-site request would carry it.
    has_browser_cookie: bool = False
    new_pre_session: str | None = None
    drop_session_cookie: bool = False


def read_session(rt: Runtime, cookies: dict[str, str]) -> WebSession:
    """Check the cookies of one request (blocking: may read the database)."""
    try:
        secret = admin_service.session_secret(rt)
        signed = cookies.get(SESSION_COOKIE)
        session_id = _valid_session_id(rt, secret, signed) if signed else None
    except SQLAlchemyError as exc:
        log.warning("cannot check the admin session, the database is not answering: %s", exc)
        return WebSession()
    pre_session = cookies.get(CSRF_COOKIE, "")
    has_pre_session = bool(_PRE_SESSION_VALUE.match(pre_session))
    has_cookie = signed is not None or has_pre_session
    if session_id is not None:
        return WebSession(Principal(kind="admin"), _derive_token(secret, "session", session_id), has_cookie)
    new_value = None if has_pre_session else secrets.token_urlsafe(32)
    token = _derive_token(secret, "pre-session", new_value or pre_session)
    return WebSession(None, token, has_cookie, new_pre_session=new_value, drop_session_cookie=signed is not None)


def _valid_session_id(rt: Runtime, secret: str, signed: str) -> str | None:
    try:
        payload = _serializer(secret).loads(signed, max_age=_session_seconds(rt.settings))
    except BadSignature:
        return None
    if not isinstance(payload, dict) or payload.get("pv") != admin_service.password_version(rt):
        return None
    session_id = payload.get("sid")
    if not isinstance(session_id, str) or not admin_service.session_is_live(rt, session_id):
        return None
    return session_id


def start_session(response: Response, rt: Runtime, password_version: str) -> None:
    """Log the browser in: set a fresh signed session cookie on `response`."""
    secret = admin_service.session_secret(rt)
    session_id = secrets.token_urlsafe(18)
    admin_service.open_session(rt, session_id)
    signed = _serializer(secret).dumps({"sid": session_id, "pv": password_version})
    settings = rt.settings
    response.headers.append(
        "set-cookie",
        cookie_header(SESSION_COOKIE, signed, max_age=_session_seconds(settings), secure=settings.cookies_secure),
    )


def end_session(response: Response, rt: Runtime, signed: str | None) -> None:
    """Log out: the session named by the cookie `signed` ends on the server, and the cookie is cleared."""
    if signed:
        try:
            payload = _serializer(admin_service.session_secret(rt)).loads(signed)
        except BadSignature:
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("sid"), str):
            admin_service.close_session(rt, payload["sid"])
    response.headers.append(
        "set-cookie", cookie_header(SESSION_COOKIE, "", max_age=0, secure=rt.settings.cookies_secure)
    )


class SessionMiddleware:
    """Sets `request.state.web`, `.session_principal` and `.csrf_token`; sets or clears cookies as needed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_SKIPPED_PREFIXES):
            await self.app(scope, receive, send)
            return
        rt = app_runtime(scope["app"])
        request = Request(scope)
        web = await anyio.to_thread.run_sync(read_session, rt, dict(request.cookies))
        request_state = scope.setdefault("state", {})
        request_state["web"] = web
        request_state["session_principal"] = web.principal
        request_state["csrf_token"] = web.csrf_token
        cookies = _cookies_to_send(web, request, rt.settings.cookies_secure)

        async def send_with_cookies(message: Message) -> None:
            if message["type"] == "http.response.start" and cookies:
                headers = MutableHeaders(scope=message)
                is_page = headers.get("content-type", "").startswith("text/html")
                # A cookie the route set itself (a login's new session) wins over the middleware's.
                already_set = {value.split("=", 1)[0] for value in headers.getlist("set-cookie")}
                for name, cookie, pages_only in cookies:
                    if name not in already_set and (is_page or not pages_only):
                        headers.append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_with_cookies)


def _cookies_to_send(web: WebSession, request: Request, secure: bool) -> list[tuple[str, str, bool]]:
    """(name, Set-Cookie value, only on HTML pages) for this response."""
    cookies = []
    if web.new_pre_session:
        # Only pages carry forms; API clients keep no cookie jar worth filling.
        cookies.append(
            (CSRF_COOKIE, cookie_header(CSRF_COOKIE, web.new_pre_session, max_age=None, secure=secure), True)
        )
    if web.drop_session_cookie:
        cookies.append((SESSION_COOKIE, cookie_header(SESSION_COOKIE, "", max_age=0, secure=secure), False))
    lang = request.query_params.get("lang")
    if lang in LANGUAGES and request.cookies.get(LANG_COOKIE) != lang:
        cookies.append(
            (LANG_COOKIE, cookie_header(LANG_COOKIE, lang, max_age=LANG_COOKIE_SECONDS, secure=secure), False)
        )
    return cookies
