"""The admin shell: the login guard for pages, the admin layout, and the dashboard.

Every admin page does the same three things:

    router = APIRouter(dependencies=[Depends(require_admin)])  # the guard, once per router

    @router.get("/admin/datasets", name="admin_datasets")
    def datasets_page(request: Request):
        return render_admin(request, "admin/datasets.html", {...}, section="admin_datasets")

The navigation in `admin/base.html` links a section as soon as a route with its name exists.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.routing import NoMatchFound

from kb.http.deps import AdminDep, runtime
from kb.http.pages.templating import render
from kb.services import admin as admin_service

router = APIRouter(tags=["pages"], include_in_schema=False)


def safe_next(path: str | None, default: str = "/admin") -> str:
    """Where to go after logging in: only a path on this site, never another host (open redirect)."""
    if not path or not path.startswith("/") or path.startswith(("//", "/\\")):
        return default
    return path


def render_admin(
    request: Request, template: str, context: dict | None = None, *, section: str, **kwargs
) -> HTMLResponse:
    """Render a page inside the admin layout; `section` is the route name of the highlighted nav entry."""

    def route_path(name: str) -> str | None:
        try:
            return str(request.app.url_path_for(name))
        except NoMatchFound:
            return None

    return render(request, template, {"section": section, "route_path": route_path, **(context or {})}, **kwargs)


@router.get("/admin", name="admin_dashboard")
def dashboard(request: Request, _: AdminDep) -> HTMLResponse:
    overview = admin_service.overview(runtime(request))
    return render_admin(request, "admin/dashboard.html", {"overview": overview}, section="admin_dashboard")
