"""Who is calling: an API key (root, all-scope or app-scoped) or a logged-in admin session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import Request

from kb.errors import Forbidden, RateLimited, Unauthorized
from kb.security import constant_time_equal, hash_api_key
from kb.store import keys as key_store


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    kind: str  # "root" | "key" | "admin"
    key_id: int | None = None
    app_id: int | None = None  # set for app-scoped keys: they may use that app only

    @property
    def is_full(self) -> bool:
        """Root, an all-scope key, or the admin session: may use every route."""
        return self.app_id is None

    def require_full(self) -> None:
        if not self.is_full:
            raise Forbidden("This API key is limited to one app and cannot use this endpoint.", code="key_scope")

    def require_app(self, app_id: int) -> None:
        if self.app_id is not None and self.app_id != app_id:
            raise Forbidden("This API key belongs to another app.", code="key_scope")


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
    if record.revoked_at is not None:
        raise Unauthorized("This API key has been revoked.", code="key_revoked")
    if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
        raise Unauthorized("This API key has expired.", code="key_expired")
    if record.token_quota is not None and record.tokens_used >= record.token_quota:
        raise RateLimited(
            f"This API key has used its quota of {record.token_quota} tokens.", code="insufficient_quota"
        )
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
