"""Route sweep: every route of the app refuses callers who may not use it.

The sweep walks the app's real routing table (included routers too), so a route added tomorrow
without a guard makes these tests fail until it is protected or listed in PUBLIC_ROUTES on purpose.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.routing import _IncludedRouter
from fastapi.testclient import TestClient
from sqlalchemy import text
from starlette.routing import BaseRoute, Mount

from kb.db.engine import Database
from tests.helpers import ROOT

# Reachable without logging in, on purpose.
PUBLIC_ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/learn"),
    ("GET", "/admin/login"),
    ("POST", "/admin/login"),
    ("GET", "/admin/setup"),  # redirects to login once a password is set
    ("POST", "/admin/setup"),  # refused once a password is set (tested in test_admin_auth)
    ("POST", "/admin/logout"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}
PUBLIC_MOUNTS = {"/static"}
# A share link's page and its visitor API: the link's token in the path is the credential, so an unknown
# token gets 404 (a plain page, or JSON under /api), never a login redirect; the visitor API also needs
# the signed visitor header (tested in tests/web/test_share_links.py and below).
SHARE_PREFIXES = ("/s/{token}", "/api/share/{token}/")
# What a key limited to one app may still call: the model list and its app's chat.
# Chats are filtered to the key's app by the chat service (tested in test_app_key_cannot_read_another_apps_chat).
APP_KEY_ROUTES = {
    ("GET", "/v1/models"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/api/chats"),
    ("GET", "/api/chats/{chat_id}"),
    ("GET", "/api/chats/{chat_id}/export"),
    ("PATCH", "/api/chats/{chat_id}"),
    ("DELETE", "/api/chats/{chat_id}"),
    ("POST", "/api/chats/{chat_id}/messages/{message_id}/feedback"),
}
# Pages outside /admin that still need the admin session (the chat page and its renderer).
SESSION_PAGES = {("GET", "/"), ("POST", "/chat/render")}
# Bodies that pass validation, for routes whose scope check runs after the body is read.
VALID_BODIES = {("POST", "/v1/embeddings"): {"model": "minilm", "input": "hello"}}


def _walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, BaseRoute]]:
    for route in routes:
        if isinstance(route, _IncludedRouter):
            yield from _walk(route.original_router.routes, prefix + route.include_context.prefix)
        else:
            yield prefix + getattr(route, "path", ""), route


def all_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route, mounts as ("MOUNT", path)."""
    found = []
    for path, route in _walk(app.router.routes):
        if isinstance(route, Mount):
            found.append(("MOUNT", path))
        else:
            found.extend((method, path) for method in sorted(route.methods or ()) if method != "HEAD")
    return found


def concrete(path: str) -> str:
    """A path with every parameter filled in, so the request reaches the route."""
    return re.sub(r"\{[^}]+\}", "1", path)


def is_share_route(path: str) -> bool:
    return path.startswith(SHARE_PREFIXES)


def guarded_routes(app: FastAPI) -> list[tuple[str, str]]:
    return [
        route
        for route in all_routes(app)
        if route not in PUBLIC_ROUTES and route[0] != "MOUNT" and not is_share_route(route[1])
    ]


def refusal_problems(
    client: TestClient, app: FastAPI, headers: dict[str, str] | None = None, code: str | None = None
) -> list[str]:
    """Every guarded route that does not refuse this caller: 401 JSON on /api and /v1, login redirect on /admin."""
    problems = []
    for method, path in guarded_routes(app):
        response = client.request(method, concrete(path), headers=headers or {}, follow_redirects=False)
        where = f"{method} {path} -> {response.status_code}"
        if path.startswith(("/api/", "/v1/")):
            if response.status_code != 401 or not response.headers["content-type"].startswith("application/json"):
                problems.append(where)
            elif code is not None and response.json()["error"]["code"] != code:
                problems.append(f"{where} with code {response.json()['error']['code']}")
        elif path == "/admin" or path.startswith("/admin/") or (method, path) in SESSION_PAGES:
            if response.status_code != 303 or not response.headers["location"].startswith("/admin/login"):
                problems.append(where)
        else:
            problems.append(f"{where}: neither /api, /v1 nor /admin, and not listed as public")
    return problems


def test_the_sweep_sees_every_family_of_routes(app):
    routes = set(all_routes(app))
    for expected in [
        ("GET", "/api/datasets"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/admin/datasets"),
        ("DELETE", "/api/keys/{key_id}"),
    ]:
        assert expected in routes
    assert ("MOUNT", "/static") in routes
    assert routes >= PUBLIC_ROUTES, f"PUBLIC_ROUTES lists routes that no longer exist: {PUBLIC_ROUTES - routes}"
    assert {mount for method, mount in routes if method == "MOUNT"} == PUBLIC_MOUNTS


def test_every_route_refuses_an_unauthenticated_caller(client, app):
    assert refusal_problems(client, app, code="missing_api_key") == []


def test_an_unprotected_route_added_later_fails_the_sweep(client, app):
    @app.get("/api/leak")
    def leak() -> dict:
        return {"secret": "x"}

    @app.get("/export")
    def export() -> dict:
        return {}

    problems = refusal_problems(client, app)
    assert any(problem.startswith("GET /api/leak -> 200") for problem in problems)
    assert any(problem.startswith("GET /export -> 200") for problem in problems)


def test_a_wrong_key_is_refused_everywhere(client, app):
    assert refusal_problems(client, app, {"Authorization": "Bearer kb-not-a-real-key"}, "invalid_api_key") == []


def _new_key(client: TestClient, **fields) -> tuple[int, dict[str, str]]:
    response = client.post("/api/keys", json={"name": "sweep", **fields}, headers=ROOT)
    assert response.status_code == 201, response.text
    return response.json()["id"], {"Authorization": f"Bearer {response.json()['key']}"}


def test_a_revoked_key_is_refused_everywhere(client, app):
    key_id, headers = _new_key(client)
    assert client.get("/api/datasets", headers=headers).status_code == 200
    assert client.delete(f"/api/keys/{key_id}", headers=ROOT).status_code == 200
    assert refusal_problems(client, app, headers, "key_revoked") == []


def test_an_expired_key_is_refused_everywhere(client, app, db: Database):
    key_id, headers = _new_key(client, expires_in_days=1)
    assert client.get("/api/datasets", headers=headers).status_code == 200
    with db.session() as session:
        session.execute(
            text("UPDATE api_key SET expires_at = now() - interval '1 second' WHERE id = :id"), {"id": key_id}
        )
        session.commit()
    assert refusal_problems(client, app, headers, "key_expired") == []


def _app_id(db: Database, name: str) -> int:
    with db.session() as session:
        app_id = session.execute(
            text("INSERT INTO app (name) VALUES (:name) RETURNING id"), {"name": name}
        ).scalar_one()
        session.commit()
    return app_id


def test_an_app_key_is_refused_on_every_route_but_its_apps_chat(client, app, db: Database):
    _, headers = _new_key(client, app_id=_app_id(db, "helpdesk"))
    problems = []
    for method, path in guarded_routes(app):
        if not path.startswith(("/api/", "/v1/")) or (method, path) in APP_KEY_ROUTES:
            continue
        response = client.request(method, concrete(path), headers=headers, json=VALID_BODIES.get((method, path)))
        if response.status_code != 403 or response.json()["error"]["code"] != "key_scope":
            problems.append(f"{method} {path} -> {response.status_code}")
    assert problems == []
    assert client.get("/v1/models", headers=headers).status_code == 200


@pytest.mark.skipif(
    importlib.util.find_spec("kb.services.app_chat") is None, reason="app chat is not in this build yet"
)
def test_an_app_key_cannot_chat_with_another_app(client, db: Database):
    _, headers = _new_key(client, app_id=_app_id(db, "helpdesk"))
    _app_id(db, "payroll")
    response = client.post(
        "/v1/chat/completions",
        headers=headers,
        json={"model": "app:payroll", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 403 and response.json()["error"]["code"] == "key_scope"


def test_admin_pages_need_the_admin_session_not_an_api_key(client, admin_client, app):
    admin_pages = [(m, p) for m, p in guarded_routes(app) if p.startswith("/admin")]
    assert admin_pages, "the sweep found no admin pages"
    refused = refusal_problems(client, app, ROOT)
    assert not [problem for problem in refused if problem.split()[1].startswith("/admin")]
    assert admin_client.get("/admin").status_code == 200
    assert admin_client.get("/admin/datasets").status_code == 200


def test_share_routes_with_an_unknown_token_say_so_and_never_redirect_to_login(client, app):
    share_routes = [(m, p) for m, p in all_routes(app) if m != "MOUNT" and is_share_route(p)]
    assert ("GET", "/s/{token}") in share_routes and ("POST", "/api/share/{token}/chat") in share_routes
    problems = []
    for method, path in share_routes:
        client.cookies.clear()  # the page's pre-session cookie would make the next POST a CSRF refusal first
        response = client.request(method, concrete(path), follow_redirects=False, data={"password": "x"})
        if response.status_code != 404 or "does not exist" not in response.text:
            problems.append(f"{method} {path} -> {response.status_code}")
    assert problems == []


def test_a_share_link_visitor_reaches_nothing_but_their_links_chat(app, db: Database):
    with TestClient(app) as visitor, TestClient(app) as admin:
        app_id = _app_id(db, "helpdesk")
        link = admin.post(f"/api/apps/{app_id}/share-links", json={}, headers=ROOT).json()
        other = admin.post(f"/api/apps/{_app_id(db, 'payroll')}/share-links", json={}, headers=ROOT).json()
        page = visitor.get(link["url"])
        token = re.search(r'<meta name="kb-visitor" content="([^"]+)">', page.text).group(1)
        csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text).group(1)
        headers = {"X-KB-Visitor": token, "X-CSRF-Token": csrf}  # and the visitor's cookies, in the client
        assert visitor.get(f"/api/share/{link['token']}/chats", headers=headers).status_code == 200
        # Every other route refuses the visitor as it refuses anybody without a key or session.
        assert refusal_problems(visitor, app, headers, "missing_api_key") == []
        # Another link's visitor API refuses this visitor's token.
        for method, path in [(m, p) for m, p in all_routes(app) if p.startswith("/api/share/{token}/")]:
            if path.endswith("embed.json"):
                continue
            response = visitor.request(method, concrete(path).replace("/1/", f"/{other['token']}/", 1), headers=headers)
            assert response.status_code == 401, (method, path, response.status_code)
