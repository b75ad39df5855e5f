"""Admin pages for API keys and usage over HTTP: the key shown once, scope, expiry, quota, revoke, usage table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import update

from kb.db.tables import UsageLog
from kb.errors import BadRequest
from kb.http.pages.keys import usage_period
from kb.security import KEY_PREFIX
from kb.services import keys as key_service
from tests.answer_data import make_app
from tests.helpers import csrf_token_of
from tests.web.support import assert_inert


def post_form(client: TestClient, path: str, values: dict, **kwargs):
    token = csrf_token_of(client.get("/admin").text)
    return client.post(path, data={**values, "csrf_token": token}, follow_redirects=False, **kwargs)


def test_a_new_key_is_shown_once_with_a_copy_button_and_works(app, admin_client, rt):
    helper = make_app(rt, "helper", [])
    created = post_form(
        admin_client,
        "/admin/keys",
        {"name": "website", "scope": str(helper.id), "expires_in_days": "30", "token_quota": "5000"},
    )
    assert created.status_code == 200 and created.headers["cache-control"] == "no-store"
    tree = HTMLParser(created.text)
    key = tree.css_first("#new-key-value").attributes["value"]
    assert key.startswith(KEY_PREFIX) and len(key) > 40
    assert tree.css_first("button.copy-button").attributes["data-copy-from"] == "new-key-value"
    assert tree.css_first('script[src="/static/keys.js"]') is not None
    record = key_service.list_keys(rt.db)[0]
    assert (record.name, record.app_id, record.token_quota) == ("website", helper.id, 5000)
    assert timedelta(days=29) < record.expires_at - datetime.now(UTC) <= timedelta(days=30)
    row = tree.css_first(f'table.keys tr[data-key-id="{record.id}"]')
    cells = [td.text(strip=True) for td in row.css("td")]
    assert cells[:3] == ["website", f"{record.prefix}…", "app helper"] and cells[4] == "5000" and cells[7] == "active"
    assert key not in admin_client.get("/admin/keys").text  # never shown again
    with TestClient(app) as program:
        models = program.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert models.status_code == 200 and [m["id"] for m in models.json()["data"]] == ["app:helper"]


def test_a_key_for_everything_without_expiry_or_quota(admin_client, rt):
    post_form(
        admin_client, "/admin/keys", {"name": "scripts", "scope": "all", "expires_in_days": "", "token_quota": ""}
    )
    record = key_service.list_keys(rt.db)[0]
    assert record.app_id is None and record.expires_at is None and record.token_quota is None
    cells = [td.text(strip=True) for td in HTMLParser(admin_client.get("/admin/keys").text).css("table.keys td")]
    assert cells[2:5] == ["all", "never", "unlimited"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"name": ""}, "Name: String should have at least 1 character"),
        ({"name": "x", "expires_in_days": "0"}, "Expires after (days): Input should be greater than or equal to 1"),
        ({"name": "x", "token_quota": "lots"}, "Token quota: Input should be a valid integer"),
        ({"name": "x", "scope": "999"}, "there is no app with id 999"),
    ],
)
def test_a_refused_key_form_says_why_and_keeps_what_was_typed(admin_client, rt, values, message):
    refused = post_form(admin_client, "/admin/keys", {"scope": "all", **values})
    assert refused.status_code == 400
    tree = HTMLParser(refused.text)
    assert message in tree.css_first("[role=alert]").text() and tree.css("#new-key-value") == []
    assert tree.css_first("#key-name").attributes["value"] == values["name"]
    assert key_service.list_keys(rt.db) == []


def test_revoking_asks_in_the_page_then_the_key_is_refused(app, admin_client, rt):
    created = key_service.create_key(rt.db, name="old")
    row = HTMLParser(admin_client.get("/admin/keys").text).css_first(f'tr[data-key-id="{created.record.id}"]')
    assert row.css_first("details.confirm form").attributes["action"] == f"/admin/keys/{created.record.id}/revoke"
    revoked = post_form(admin_client, f"/admin/keys/{created.record.id}/revoke", {})
    assert revoked.status_code == 303 and revoked.headers["location"] == "/admin/keys?notice=key_revoked"
    page = HTMLParser(admin_client.get(revoked.headers["location"]).text)
    assert page.css_first("[role=status]").text() == "The key was revoked; it is refused from now on."
    assert page.css_first(f'tr[data-key-id="{created.record.id}"] .key-status').text(strip=True).startswith("revoked ")
    assert page.css(f'tr[data-key-id="{created.record.id}"] details.confirm') == []
    with TestClient(app) as program:
        assert program.get("/v1/models", headers={"Authorization": f"Bearer {created.key}"}).status_code == 401


@pytest.mark.parametrize("path", ["/admin/keys", "/admin/keys/{id}/revoke"])
def test_key_forms_without_the_csrf_token_are_refused(admin_client, rt, path):
    created = key_service.create_key(rt.db, name="kept")
    response = admin_client.post(
        path.format(id=created.record.id), data={"name": "new", "scope": "all"}, headers={"X-CSRF-Token": ""}
    )
    assert response.status_code == 403
    assert [(k.name, k.revoked_at) for k in key_service.list_keys(rt.db)] == [("kept", None)]


def test_hostile_key_and_app_names_are_escaped(admin_client, rt):
    hostile = "<script>alert(1)</script><img src=x onerror=alert(1)>"
    make_app(rt, "evil <img src=x onerror=alert(1)>", [])
    key_service.create_key(rt.db, name=hostile)
    assert_inert(admin_client.get("/admin/keys").text)


def test_the_usage_table_shows_requests_tokens_latency_and_errors_per_key_and_model(app, admin_client, rt):
    created = key_service.create_key(rt.db, name="busy")
    with TestClient(app) as program:
        headers = {"Authorization": f"Bearer {created.key}"}
        for _ in range(2):
            program.post(
                "/v1/chat/completions",
                json={"model": "scripted", "messages": [{"role": "user", "content": "hi"}]},
                headers=headers,
            )
        program.post(
            "/v1/chat/completions",
            json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
            headers=headers,
        )
    rows = HTMLParser(admin_client.get("/admin/usage").text).css("table.usage tbody tr")
    table = {row.css("td")[1].text(strip=True): [td.text(strip=True) for td in row.css("td")] for row in rows}
    assert set(table) == {"scripted", "nope"}
    scripted = table["scripted"]
    assert scripted[0] == f"busy{created.record.prefix}…" and scripted[2] == "2" and scripted[8] == "0"
    assert int(scripted[5]) == int(scripted[3]) + int(scripted[4]) > 0 and scripted[6].endswith(" ms")
    assert table["nope"][2] == "1" and table["nope"][8] == "1"


def test_the_usage_period_filter_leaves_out_older_requests(app, admin_client, rt):
    created = key_service.create_key(rt.db, name="busy")
    with TestClient(app) as program:
        program.get("/v1/models", headers={"Authorization": f"Bearer {created.key}"})
    with rt.db.session() as session:
        session.execute(update(UsageLog).values(created_at=datetime.now(UTC) - timedelta(days=10)))
        session.commit()
    assert len(HTMLParser(admin_client.get("/admin/usage?days=30").text).css("table.usage tbody tr")) == 1
    assert "No request in this period." in admin_client.get("/admin/usage?days=7").text
    day = (datetime.now(UTC) - timedelta(days=10)).date().isoformat()
    assert (
        len(HTMLParser(admin_client.get(f"/admin/usage?since={day}&until={day}").text).css("table.usage tbody tr")) == 1
    )


def test_a_bad_usage_period_is_explained_on_the_page(admin_client):
    page = admin_client.get("/admin/usage?since=yesterday")
    assert page.status_code == 400 and "From must be a date like 2025-01-31" in page.text
    page = admin_client.get("/admin/usage?since=2025-02-01&until=2025-01-01")
    assert page.status_code == 400 and "must be before until" in page.text


def test_the_usage_period_counts_both_days_of_a_range():
    since, until = usage_period("2025-01-01", "2025-01-31", None)
    assert since == datetime(2025, 1, 1, tzinfo=UTC) and until == datetime(2025, 2, 1, tzinfo=UTC)
    with pytest.raises(BadRequest):
        usage_period("31/01/2025", None, None)


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("days=0", "between 1 and 36,500 days"),
        ("days=1000000000", "between 1 and 36,500 days"),
        ("until=9999-12-31", "before 9999-12-31"),
        ("since=0001-01-02&until=0001-01-01", "must be before"),
    ],
)
def test_a_usage_period_kb_cannot_count_is_explained_on_the_page_not_a_500(admin_client, query, says):
    response = admin_client.get(f"/admin/usage?{query}")
    assert response.status_code == 400 and says in response.text
