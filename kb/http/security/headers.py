"""Security headers on every response, and CORS (closed unless `KB_CORS_ORIGINS` names origins)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No inline script or style anywhere: all JavaScript lives in web/static/*.js, all CSS in kb.css.
STRICT_CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
# FastAPI's /docs and /redoc pages load their viewer from a CDN with an inline start-up script;
# they show no user data, so they get a looser policy than every other page.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "worker-src 'self' blob:; object-src 'none'; frame-ancestors 'none'; base-uri 'self'"
)
DOCS_PATHS = ("/docs", "/redoc")

COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def framed_by(csp: str, origins: list[str]) -> str:
    """The policy with `frame-ancestors` opened to these origins (and this site)."""
    return csp.replace("frame-ancestors 'none'", "frame-ancestors 'self' " + " ".join(origins))


class SecurityHeadersMiddleware:
    """Adds the CSP and friends to every response; admin pages are also kept out of caches."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        csp = DOCS_CSP if path.startswith(DOCS_PATHS) else STRICT_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # A share link's page may be framed by the sites its admin listed (kb/http/pages/share.py).
                ancestors = scope.get("state", {}).get("frame_ancestors")
                headers["Content-Security-Policy"] = framed_by(csp, ancestors) if ancestors else csp
                for name, value in COMMON_HEADERS.items():
                    if not (ancestors and name == "X-Frame-Options"):
                        headers[name] = value
                if path.startswith("/admin") and "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_security_headers(app: FastAPI, cors_origins: list[str]) -> None:
    """Add CORS (only for the listed origins, never with cookies) and then the headers, outermost."""
    if cors_origins:
        # Cross-origin callers authenticate with API keys; cookies stay same-site, which keeps CSRF closed.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(SecurityHeadersMiddleware)
