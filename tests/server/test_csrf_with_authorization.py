"""Finding 17 of the hardening review: CSRF was skipped whenever an Authorization header was present,
even on pages that authenticate by the session cookie."""

from __future__ import annotations

from kb.services import datasets as dataset_service
from tests.helpers import ROOT


def test_a_cookie_authenticated_form_needs_the_csrf_token_even_with_an_authorization_header(admin_client, app):
    del admin_client.headers["X-CSRF-Token"]
    response = admin_client.post(
        "/admin/datasets",
        data={"name": "forged", "description": ""},
        headers={"Authorization": "Bearer anything"},
        follow_redirects=False,
    )
    assert response.status_code == 403, response.status_code
    assert "security token" in response.text
    rt = app.state.runtime
    assert [d.name for d in dataset_service.list_datasets(rt)] == []


def test_an_api_key_without_a_session_still_needs_no_csrf_token(client):
    client.get("/admin/login")  # the browser-like client now holds the pre-session cookie
    assert client.post("/api/datasets", json={"name": "scripted"}, headers=ROOT).status_code == 201
