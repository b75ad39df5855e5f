"""The admin shell: the login guard for pages, the admin layout, and the dashboard.

Every admin page does the same three things:

    @router.get("/admin/datasets", name="admin_datasets")
    def datasets_page(request: Request, _: Principal = Depends(require_admin)):
        return render_admin(request, "admin/datasets.html", {...}, section="admin_datasets")

The navigation in `admin/base.html` links a section as soon as a route with its name exists.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.routing import NoMatchFound

from kb.auth import Principal
from kb.pages.templating import render
from kb.services import admin as admin_service

router = APIRouter(tags=["pages"], include_in_schema=False)

LOGIN_PATH = "/admin/login"


class LoginRequired(Exception):
    """Raised by `require_admin` for a logged-out browser; answered with a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def safe_next(path: str | None, default: str = "/admin") -> str:
    """Where to go after logging in: only a path on this site, never another host (open redirect)."""
    if not path or not path.startswith("/") or path.startswith(("//", "/\\")):
        return default
    return path


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


def render_admin(request: Request, template: str, context: dict | None = None, *, section: str, **kwargs) -> HTMLResponse:
    """Render a page inside the admin layout; `section` is the route name of the highlighted nav entry."""

    def route_path(name: str) -> str | None:
        try:
            return str(request.app.url_path_for(name))
        except NoMatchFound:
            return None

    return render(request, template, {"section": section, "route_path": route_path, **(context or {})}, **kwargs)


@router.get("/admin", name="admin_dashboard")
def dashboard(request: Request, _: Principal = Depends(require_admin)) -> HTMLResponse:
    overview = admin_service.overview(request.app.state)
    return render_admin(request, "admin/dashboard.html", {"overview": overview}, section="admin_dashboard")
