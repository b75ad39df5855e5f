"""Who is calling: used by every layer, so it knows nothing of HTTP (the web layer builds it)."""

from __future__ import annotations

from dataclasses import dataclass

from kb.errors import Forbidden


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

    def require_key_manager(self) -> None:
        """Keys are made and revoked by the root key and the admin only: a key must not mint a stronger one."""
        if self.kind not in ("root", "admin"):
            raise Forbidden(
                "API keys are managed with the root key (KB_ROOT_KEY) or in the admin pages; "
                "another API key cannot create, list or revoke keys.",
                code="key_management",
            )

    def require_full(self) -> None:
        if not self.is_full:
            raise Forbidden("This API key is limited to one app and cannot use this endpoint.", code="key_scope")

    def require_app(self, app_id: int) -> None:
        if self.app_id is not None and self.app_id != app_id:
            raise Forbidden("This API key belongs to another app.", code="key_scope")
