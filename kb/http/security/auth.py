"""Who is calling: an API key (root, all-scope or app-scoped) or a logged-in admin session."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse

from kb.db.store import keys as key_store
from kb.errors import RateLimited, Unauthorized
from kb.principal import Principal
from kb.security import constant_time_equal, hash_api_key


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def principal_from_key(request: Request, token: str) -> Principal:
    """Check a bearer token against the root key and the stored keys."""
    settings = request.app.state.settings
    if settings.root_key is not None and constant_time_equal(token, settings.root_key.get_secret_value()):
        return Principal(kind="root")
    with request.app.state.db.session() as session:
        record = key_store.find_key_by_hash(session, hash_api_key(token))
    if record is None:
        raise Unauthorized("Incorrect API key provided.")
    request.state.api_key_id = record.id  # so a refused request (expired, over quota) is still logged against its key
    if record.revoked_at is not None:
        raise Unauthorized("This API key has been revoked.", code="key_revoked")
    if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
        raise Unauthorized("This API key has expired.", code="key_expired")
    if record.token_quota is not None and record.tokens_used >= record.token_quota:
        raise RateLimited(f"This API key has used its quota of {record.token_quota} tokens.", code="insufficient_quota")
    return Principal(kind="key", key_id=record.id, app_id=record.app_id)


def require_principal(request: Request) -> Principal:
    """FastAPI dependency for every protected JSON route: a bearer key or an admin session."""
    token = bearer_token(request)
    if token is not None:
        principal = principal_from_key(request, token)
    else:
        principal = getattr(request.state, "session_principal", None)
        if principal is None:
            raise Unauthorized(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.", code="missing_api_key"
            )
    request.state.principal = principal
    return principal


def require_full_access(request: Request) -> Principal:
    """Dependency for management routes (datasets, keys, apps): app-scoped keys are refused."""
    principal = require_principal(request)
    principal.require_full()
    return principal


def require_key_manager(request: Request) -> Principal:
    """Dependency for key management and usage: the root key or the admin session, never another key."""
    principal = require_full_access(request)
    principal.require_key_manager()
    return principal


LOGIN_PATH = "/admin/login"


class LoginRequired(Exception):
    """Raised by `require_admin` for a logged-out browser; answered with a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def require_admin(request: Request) -> Principal:
    """Dependency for admin pages: the session's principal, else a redirect to the login page."""
    principal = getattr(request.state, "session_principal", None)
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    return principal


async def redirect_to_login(request: Request, exc: LoginRequired) -> RedirectResponse:
    """Exception handler for LoginRequired."""
    return RedirectResponse(f"{LOGIN_PATH}?next={quote(exc.next_path, safe='/')}", status_code=303)
