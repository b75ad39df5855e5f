"""CSRF on every state-changing request sent with our cookies, security headers, CORS, no inline code."""

from __future__ import annotations

import re

import pytest
from fastapi import Depends, Form
from fastapi.testclient import TestClient

from kb.http.app import create_app
from kb.http.pages.templating import WEB_DIR
from kb.http.security.auth import require_principal
from kb.principal import Principal
from tests.helpers import ROOT, log_in


@pytest.fixture
def app(app):
    """The app with one protected JSON route and one form route, as the feature pages will add."""

    @app.post("/api/test-echo")
    def echo(principal: Principal = Depends(require_principal)) -> dict:
        return {"kind": principal.kind}

    @app.post("/api/test-form")
    def form_echo(name: str = Form(...), principal: Principal = Depends(require_principal)) -> dict:
        return {"kind": principal.kind, "name": name}

    return app


@pytest.fixture
def session_client(client) -> tuple[TestClient, str]:
    """A logged-in client that does NOT send the CSRF header on its own, and its token."""
    token = log_in(client)
    del client.headers["X-CSRF-Token"]
    return client, token


def test_json_routes_accept_the_session_cookie_and_refuse_a_missing_one(admin_client, client):
    assert admin_client.get("/v1/models").status_code == 200
    response = client.get("/v1/models")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


def test_a_json_post_with_the_session_cookie_but_no_token_is_refused(session_client):
    client, token = session_client
    refused = client.post("/api/test-echo", json={})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"
    assert "Reload the page" in refused.json()["error"]["message"]
    assert client.post("/api/test-echo", json={}, headers={"X-CSRF-Token": "0" * 64}).status_code == 403
    passed = client.post("/api/test-echo", json={}, headers={"X-CSRF-Token": token})
    assert passed.status_code == 200 and passed.json() == {"kind": "admin"}


def test_a_form_post_with_the_session_cookie_needs_the_token_field(session_client):
    client, token = session_client
    assert client.post("/api/test-form", data={"name": "x"}).status_code == 403
    passed = client.post("/api/test-form", data={"name": "x", "csrf_token": token})
    assert passed.json() == {"kind": "admin", "name": "x"}
    upload = client.post(
        "/api/test-form", data={"name": "y", "csrf_token": token}, files={"file": ("a.txt", b"hello", "text/plain")}
    )
    assert upload.json() == {"kind": "admin", "name": "y"}


def test_a_token_from_another_session_is_refused(session_client, app):
    client, _ = session_client
    with TestClient(app) as other:
        other_token = log_in(other)
    assert client.post("/api/test-echo", json={}, headers={"X-CSRF-Token": other_token}).status_code == 403


def test_bearer_key_requests_need_no_csrf_token_even_with_a_session_cookie(session_client, app):
    client, _ = session_client
    assert client.post("/api/test-echo", json={}, headers=ROOT).json() == {"kind": "root"}
    with TestClient(app) as api_client:
        assert api_client.post("/api/test-echo", json={}, headers=ROOT).json() == {"kind": "root"}


def test_a_post_without_any_cookie_or_key_gets_the_missing_key_error_not_a_csrf_one(app):
    with TestClient(app) as api_client:
        response = api_client.post("/api/test-echo", json={})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


@pytest.mark.parametrize("path", ["/admin/login", "/healthz", "/static/kb.css", "/v1/models", "/no-such-page"])
def test_every_response_carries_the_security_headers(client, path):
    headers = client.get(path).headers
    csp = headers["content-security-policy"]
    for directive in ("default-src 'self'", "object-src 'none'", "frame-ancestors 'none'", "base-uri 'self'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"


def test_admin_pages_are_not_cached(admin_client):
    assert admin_client.get("/admin").headers["cache-control"] == "no-store"


def test_the_api_docs_page_keeps_working_under_its_own_policy(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert "https://cdn.jsdelivr.net" in response.headers["content-security-policy"]


def _preflight(client: TestClient, origin: str):
    return client.options(
        "/v1/models",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )


def test_cors_is_closed_by_default(client):
    response = _preflight(client, "https://app.example")
    assert "access-control-allow-origin" not in response.headers


def test_cors_opens_only_for_configured_origins_and_never_with_cookies(settings, db):
    app = create_app(settings.model_copy(update={"cors_origins": ["https://app.example"]}), db=db)
    with TestClient(app) as client:
        allowed = _preflight(client, "https://app.example")
        other = _preflight(client, "https://evil.example")
        simple = client.get("/v1/models", headers={"Origin": "https://app.example", **ROOT})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-credentials" not in allowed.headers
    assert "access-control-allow-origin" not in other.headers
    assert simple.headers["access-control-allow-origin"] == "https://app.example"
    assert "content-security-policy" in allowed.headers


INLINE_CODE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "inline <script>"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "inline event handler"),
    (re.compile(r"\sstyle\s*=", re.I), "inline style attribute"),
    (re.compile(r"<style", re.I), "<style> block"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
]


def test_no_template_holds_inline_code_the_csp_would_block():
    problems = []
    for template in sorted((WEB_DIR / "templates").rglob("*.html")):
        source = template.read_text(encoding="utf-8")
        problems += [f"{template.name}: {what}" for pattern, what in INLINE_CODE if pattern.search(source)]
    assert problems == []


def test_every_html_form_carries_the_csrf_field():
    for template in sorted((WEB_DIR / "templates").rglob("*.html")):
        source = template.read_text(encoding="utf-8")
        for form in re.findall(r"<form\b.*?</form>", source, re.S | re.I):
            if re.search(r'method="post"', form, re.I):
                assert '{% include "_csrf.html" %}' in form, f"{template.name} has a POST form without the CSRF field"


def test_pages_carry_the_token_for_scripts(client):
    assert re.search(r'<meta name="csrf-token" content="[0-9a-f]{64}">', client.get("/admin/login").text)


def test_only_pages_set_the_pre_session_cookie(client):
    assert "kb_csrf" not in client.get("/healthz").headers.get("set-cookie", "")
    page = client.get("/admin/login").headers["set-cookie"]
    assert page.startswith("kb_csrf=") and "HttpOnly" in page and "SameSite=Lax" in page
