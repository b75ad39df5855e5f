"""Share-link visitors: a random visitor id per browser, signed so it cannot be forged or borrowed.

The page carries the signed token in `<meta name="kb-visitor">` and chat.js sends it back as the
`X-KB-Visitor` header: a header a cross-site page cannot make a browser send (CSRF-proof like a
bearer key) and that works inside an embedding site's iframe, where third-party cookies may be
blocked. A cookie (path `/s/`) keeps the same visitor across visits to the top-level page. The token
binds the visitor to one link and, for a password link, to the password it unlocked.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeSerializer

from kb.db.store.share_links import ShareLinkRecord
from kb.errors import Unauthorized
from kb.http.security.ratelimit import Limit, client_address, spend
from kb.http.security.session import cookie_header
from kb.runtime import Runtime
from kb.services import admin as admin_service
from kb.services import share_links as share_service

VISITOR_HEADER = "x-kb-visitor"
VISITOR_COOKIE = "kb_visitor"
COOKIE_SECONDS = 365 * 24 * 3600


@dataclass(frozen=True)
class Visitor:
    """Who is chatting through a link: the link and the browser's visitor id."""

    link: ShareLinkRecord
    visitor_id: str
    unlocked: bool  # a password link's password was given (always True for a link without one)


def _serializer(rt: Runtime) -> URLSafeSerializer:
    return URLSafeSerializer(admin_service.session_secret(rt), salt="kb.share-visitor")


def sign(rt: Runtime, visitor: Visitor) -> str:
    password = share_service.password_fingerprint(visitor.link) if visitor.unlocked else None
    return _serializer(rt).dumps({"l": visitor.link.id, "v": visitor.visitor_id, "p": password})


def read(rt: Runtime, link: ShareLinkRecord, signed: str | None) -> Visitor | None:
    """The visitor a token names, if it was signed here for this link."""
    if not signed or len(signed) > 500:
        return None
    try:
        payload = _serializer(rt).loads(signed)
    except BadSignature:
        return None
    if not isinstance(payload, dict) or payload.get("l") != link.id or not isinstance(payload.get("v"), str):
        return None
    fingerprint = share_service.password_fingerprint(link)
    return Visitor(link, payload["v"], fingerprint is None or payload.get("p") == fingerprint)


def page_visitor(rt: Runtime, link: ShareLinkRecord, request: Request) -> Visitor:
    """The visitor behind the page's cookie, or a new one."""
    known = read(rt, link, request.cookies.get(VISITOR_COOKIE))
    return known or Visitor(link, secrets.token_urlsafe(16), link.password_hash is None)


def remember(response: Response, rt: Runtime, visitor: Visitor) -> None:
    """Keep the visitor in this browser (the top-level page; an iframe keeps it for the page's life)."""
    cookie = cookie_header(
        VISITOR_COOKIE, sign(rt, visitor), max_age=COOKIE_SECONDS, secure=rt.settings.secure_cookies
    ).replace("Path=/", f"Path=/s/{visitor.link.token}")
    response.headers.append("set-cookie", cookie)


def api_visitor(rt: Runtime, token: str, request: Request) -> Visitor:
    """Dependency body for the visitor API: a usable link and an unlocked visitor from the header."""
    link = share_service.open_link(rt, token)
    visitor = read(rt, link, request.headers.get(VISITOR_HEADER))
    if visitor is None:
        raise Unauthorized("Open the share link's page first; this request carries no visitor.", code="no_visitor")
    if not visitor.unlocked:
        raise Unauthorized("This share link needs its password.", code="password_required")
    return visitor


def limit_visitor(request: Request, visitor: Visitor) -> None:
    """The link's per-visitor limit (and per address, so clearing cookies does not reset it), in the shared buckets."""
    per_minute = visitor.link.rate_limit_per_minute
    if not per_minute:
        return
    limit = Limit(f"share-{visitor.link.id}", per_minute)
    for caller in (f"visitor:{visitor.visitor_id}", f"ip:{client_address(request)}"):
        spend(request, limit, caller, "questions through this link")


def limit_password(request: Request, link: ShareLinkRecord) -> None:
    """Password guesses on a share link count against the address's login limit."""
    spend(request, request.app.state.rate_limits.login_per_ip, f"share:{client_address(request)}", "password attempts")
