"""Admin login, logout and the first-run page that sets the password."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from kb.errors import RateLimited
from kb.http.deps import runtime
from kb.http.i18n import request_language, translate
from kb.http.pages.admin import safe_next
from kb.http.pages.templating import render
from kb.http.security.auth import LOGIN_PATH
from kb.http.security.csrf import require_csrf
from kb.http.security.ratelimit import client_address, limit_login
from kb.http.security.session import SESSION_COOKIE, end_session, start_session
from kb.services import admin as admin_service

router = APIRouter(tags=["pages"], include_in_schema=False)

SETUP_PATH = "/admin/setup"


def _see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _login_form(request: Request, next_path: str, error: str | None = None, **kwargs) -> HTMLResponse:
    return render(request, "admin/login.html", {"next": next_path, "error": error}, **kwargs)


@router.get(LOGIN_PATH, name="admin_login")
def login_page(request: Request, next: str = "/admin") -> Response:
    if request.state.session_principal is not None:
        return _see_other(safe_next(next))
    if not admin_service.password_is_set(runtime(request)):
        return _see_other(SETUP_PATH)
    return _login_form(request, safe_next(next))


@router.post(LOGIN_PATH, dependencies=[Depends(require_csrf)])
def log_in(request: Request, password: str = Form(""), next: str = Form("/admin")) -> Response:
    next_path = safe_next(next)
    try:
        limit_login(request)
    except RateLimited as exc:
        return _login_form(request, next_path, exc.message, status_code=exc.status_code, headers=exc.headers)
    try:
        version = admin_service.log_in(runtime(request), client_address(request), password)
    except (admin_service.LockedOut, admin_service.LoginFailed) as exc:
        error = translate(request_language(request), exc.template, **exc.values)
        return _login_form(request, next_path, error, status_code=exc.status_code, headers=exc.headers or None)
    response = _see_other(next_path)
    start_session(response, runtime(request), version)
    return response


@router.post("/admin/logout", name="admin_logout")
def log_out(request: Request) -> Response:
    response = _see_other(LOGIN_PATH)
    end_session(response, runtime(request), request.cookies.get(SESSION_COOKIE))
    return response


def _setup_form(request: Request, error: str | None = None, **kwargs) -> HTMLResponse:
    context = {"min_length": admin_service.MIN_PASSWORD_LENGTH, "error": error}
    return render(request, "admin/setup.html", context, **kwargs)


@router.get(SETUP_PATH, name="admin_setup")
def setup_page(request: Request) -> Response:
    if admin_service.password_is_set(runtime(request)):
        return _see_other(LOGIN_PATH)
    return _setup_form(request)


@router.post(SETUP_PATH, dependencies=[Depends(require_csrf)])
def set_up(request: Request, password: str = Form(""), confirmation: str = Form("")) -> Response:
    try:
        version = admin_service.set_first_password(runtime(request), password, confirmation)
    except admin_service.PasswordRejected as exc:
        error = translate(request_language(request), exc.template, **exc.values)
        return _setup_form(request, error, status_code=exc.status_code)
    response = _see_other("/admin")
    start_session(response, runtime(request), version)
    return response
