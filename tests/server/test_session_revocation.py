"""Finding 14 of the hardening review: sessions could not be revoked (logout only cleared the cookie),
and cookies were not Secure by default on a server reachable from the network."""

from __future__ import annotations

from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import text

from kb.http.app import create_app
from tests.helpers import ADMIN_PASSWORD, csrf_token_of, log_in


def _logged_in_cookie(client: TestClient) -> str:
    log_in(client)
    return client.cookies["kb_session"]


def test_logout_ends_the_session_on_the_server_even_for_a_copied_cookie(app):
    with TestClient(app) as browser, TestClient(app) as thief:
        cookie = _logged_in_cookie(browser)
        thief.cookies.set("kb_session", cookie)
        assert thief.get("/admin", follow_redirects=False).status_code == 200
        assert browser.post("/admin/logout", follow_redirects=False).status_code == 303
        refused = thief.get("/admin", follow_redirects=False)
    assert refused.status_code == 303 and refused.headers["location"].startswith("/admin/login")


def test_a_password_change_ends_every_stored_session(app, settings, db):
    with TestClient(app) as browser:
        cookie = _logged_in_cookie(browser)
    changed = create_app(settings.model_copy(update={"admin_password": SecretStr("a-brand-new-password")}), db=db)
    with TestClient(changed) as client:
        client.cookies.set("kb_session", cookie)
        assert client.get("/admin", follow_redirects=False).status_code == 303
    with db.session() as session:
        assert session.scalar(text("SELECT count(*) FROM admin_session")) == 0


def test_cookies_are_secure_by_default_unless_kb_listens_on_loopback_only(settings, db):
    for host, secure in [("0.0.0.0", True), ("10.0.0.5", True), ("127.0.0.1", False), ("localhost", False)]:
        with TestClient(create_app(settings.model_copy(update={"host": host}), db=db)) as client:
            page = client.get("/admin/login")
            response = client.post(
                "/admin/login",
                data={"password": ADMIN_PASSWORD, "csrf_token": csrf_token_of(page.text)},
                follow_redirects=False,
            )
        assert ("Secure" in response.headers["set-cookie"]) is secure, host
    exposed_but_plain = settings.model_copy(update={"host": "0.0.0.0", "secure_cookies": False})
    with TestClient(create_app(exposed_but_plain, db=db)) as client:
        assert "Secure" not in client.get("/admin/login").headers["set-cookie"]
