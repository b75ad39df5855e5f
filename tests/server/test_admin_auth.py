"""Admin login, first-run setup, lockout with backoff, logout and sessions, through the HTTP client."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from pydantic import SecretStr
from sqlalchemy import text

from kb.http.app import create_app
from kb.services.admin import lockout_seconds, open_session, password_version, session_secret
from tests.helpers import ADMIN_PASSWORD, csrf_token_of, log_in


def post_login(client: TestClient, password: str, **extra):
    token = csrf_token_of(client.get("/admin/login").text)
    return client.post(
        "/admin/login", data={"password": password, "csrf_token": token, **extra}, follow_redirects=False
    )


def expire_lockout(db) -> None:
    with db.session() as session:
        session.execute(text("UPDATE login_attempt SET locked_until = now() - interval '1 second'"))
        session.commit()


def test_the_right_password_logs_in_and_opens_the_dashboard(client):
    response = post_login(client, ADMIN_PASSWORD)
    assert response.status_code == 303
    assert response.headers["location"] == "/admin"
    dashboard = client.get("/admin", follow_redirects=False)
    assert dashboard.status_code == 200
    assert "Overview" in dashboard.text and "Log out" in dashboard.text


def test_a_wrong_password_is_refused_with_a_message_and_no_session(client):
    response = post_login(client, "not the password")
    assert response.status_code == 401
    assert "Wrong password." in response.text
    assert "kb_session" not in response.headers.get("set-cookie", "")
    assert client.get("/admin", follow_redirects=False).status_code == 303


def test_repeated_failures_lock_the_address_out_with_a_doubling_retry_after(client, db):
    for _ in range(4):
        assert post_login(client, "wrong").status_code == 401
    fifth = post_login(client, "wrong")
    assert fifth.status_code == 429
    assert fifth.headers["retry-after"] == "30"
    assert "Try again in 30 seconds" in fifth.text

    during_lock = post_login(client, ADMIN_PASSWORD)
    assert during_lock.status_code == 429, "a locked-out address must not get its password checked"
    assert 0 < int(during_lock.headers["retry-after"]) <= 30

    expire_lockout(db)
    sixth = post_login(client, "wrong")
    assert sixth.status_code == 429
    assert sixth.headers["retry-after"] == "60"

    expire_lockout(db)
    assert post_login(client, ADMIN_PASSWORD).status_code == 303
    with db.session() as session:
        assert session.execute(text("SELECT count(*) FROM login_attempt")).scalar() == 0


def test_lockout_starts_at_the_limit_doubles_and_is_capped():
    assert lockout_seconds(4, 5, 30) == 0
    assert [lockout_seconds(n, 5, 30) for n in (5, 6, 7)] == [30, 60, 120]
    assert lockout_seconds(10_000, 5, 30) == 3600


def test_the_login_form_without_its_csrf_token_is_refused(client, app):
    client.get("/admin/login")  # the browser has its pre-session cookie, but the form lacks the token
    response = client.post("/admin/login", data={"password": ADMIN_PASSWORD}, follow_redirects=False)
    assert response.status_code == 403
    assert "security token" in response.text
    with TestClient(app) as stranger:  # no cookie at all, as a cross-site form would arrive
        forged = stranger.post(
            "/admin/login", data={"password": ADMIN_PASSWORD, "csrf_token": "x"}, follow_redirects=False
        )
    assert forged.status_code == 403


def test_login_returns_to_the_requested_page_but_never_to_another_site(client):
    redirect = client.get("/admin?tab=1", follow_redirects=False)
    assert redirect.status_code == 303
    assert redirect.headers["location"] == "/admin/login?next=/admin%3Ftab%3D1"
    assert post_login(client, ADMIN_PASSWORD, next="//evil.example/x").headers["location"] == "/admin"


def test_admin_pages_redirect_to_login_when_logged_out(client):
    response = client.get("/admin", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/admin/login")
    assert "Admin login" in client.get("/admin").text


def test_logout_needs_the_csrf_token_and_ends_the_session(client):
    log_in(client)
    token = client.headers.pop("X-CSRF-Token")
    assert client.post("/admin/logout", follow_redirects=False).status_code == 403
    response = client.post("/admin/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/login"
    assert "kb_session=" in response.headers["set-cookie"] and "Max-Age=0" in response.headers["set-cookie"]
    assert client.get("/admin", follow_redirects=False).status_code == 303


def test_the_session_cookie_is_http_only_same_site_and_expires(client):
    cookie = post_login(client, ADMIN_PASSWORD).headers["set-cookie"]
    assert cookie.startswith("kb_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age=43200" in cookie
    assert "Secure" not in cookie


def test_cookies_are_marked_secure_when_configured(settings, db):
    with TestClient(create_app(settings.model_copy(update={"secure_cookies": True}), db=db)) as client:
        page = client.get("/admin/login")
        response = client.post(
            "/admin/login",
            data={"password": ADMIN_PASSWORD, "csrf_token": csrf_token_of(page.text)},
            follow_redirects=False,
        )
    assert "Secure" in page.headers["set-cookie"]  # the pre-session cookie
    assert "Secure" in response.headers["set-cookie"]


def _session_cookie_signed_at(secret: str, payload: dict, when: float) -> str:
    class SignerAt(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(when)

    return URLSafeTimedSerializer(secret, salt="kb.admin-session", signer=SignerAt).dumps(payload)


def test_an_expired_or_tampered_session_is_refused_and_its_cookie_cleared(client, app):
    secret, version = session_secret(app.state), password_version(app.state)
    open_session(app.state, "s")  # as a login does: the server knows the session id
    fresh = _session_cookie_signed_at(secret, {"sid": "s", "pv": version}, time.time())
    stale = _session_cookie_signed_at(secret, {"sid": "s", "pv": version}, time.time() - 13 * 3600)
    forged = _session_cookie_signed_at("not-the-secret", {"sid": "s", "pv": version}, time.time())
    client.cookies.set("kb_session", fresh)
    assert client.get("/admin", follow_redirects=False).status_code == 200
    for cookie in (stale, forged):
        client.cookies.set("kb_session", cookie)
        response = client.get("/admin", follow_redirects=False)
        assert response.status_code == 303
        assert "kb_session=" in response.headers["set-cookie"] and "Max-Age=0" in response.headers["set-cookie"]


def test_processes_agree_on_the_generated_session_secret(settings, db, client):
    assert settings.session_secret is None
    log_in(client)
    with TestClient(create_app(settings, db=db)) as second_process:
        second_process.cookies.set("kb_session", client.cookies["kb_session"])
        assert second_process.get("/admin", follow_redirects=False).status_code == 200


def test_a_changed_environment_password_wins_and_ends_older_sessions(settings, db, client):
    log_in(client)
    changed = settings.model_copy(update={"admin_password": SecretStr("the-new-password")})
    with TestClient(create_app(changed, db=db)) as restarted:
        restarted.cookies.set("kb_session", client.cookies["kb_session"])
        assert restarted.get("/admin", follow_redirects=False).status_code == 303
        assert post_login(restarted, ADMIN_PASSWORD).status_code == 401
        assert post_login(restarted, "the-new-password").status_code == 303


def test_the_first_run_page_sets_the_password_only_while_none_exists(settings, db):
    unset = settings.model_copy(update={"admin_password": None})
    with TestClient(create_app(unset, db=db)) as client:
        assert client.get("/admin/login", follow_redirects=False).headers["location"] == "/admin/setup"
        token = csrf_token_of(client.get("/admin/setup").text)

        def set_up(password: str, confirmation: str):
            form = {"password": password, "confirmation": confirmation, "csrf_token": token}
            return client.post("/admin/setup", data=form, follow_redirects=False)

        assert (
            client.post("/admin/setup", data={"password": "long enough", "confirmation": "long enough"}).status_code
            == 403
        )
        too_short = set_up("short", "short")
        assert too_short.status_code == 400 and "at least 8 characters" in too_short.text
        assert "differ" in set_up("long enough", "long enougx").text
        done = set_up("long enough", "long enough")
        assert done.status_code == 303 and done.headers["location"] == "/admin"
        assert client.get("/admin", follow_redirects=False).status_code == 200

        assert client.get("/admin/setup", follow_redirects=False).headers["location"] == "/admin/login"
        client.headers["X-CSRF-Token"] = csrf_token_of(client.get("/admin").text)
        again = client.post("/admin/setup", data={"password": "taken over!", "confirmation": "taken over!"})
        assert again.status_code == 409

    with db.session() as session:
        stored = session.execute(text("SELECT value FROM setting WHERE key = 'admin_password'")).scalar_one()
    assert stored["hash"].startswith("$argon2") and "long enough" not in str(stored)
    with TestClient(create_app(unset, db=db)) as fresh:
        assert post_login(fresh, "long enough").status_code == 303


def test_the_first_run_page_is_closed_when_the_password_comes_from_the_environment(client):
    response = client.get("/admin/setup", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/login"
