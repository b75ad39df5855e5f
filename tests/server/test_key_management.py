"""Finding 2 of the hardening review: a limited key could make an unlimited one.

The policy: keys are created, listed and revoked (and usage read) with the root key or in the admin
session only; no other API key may, whatever its scope, expiry or quota.
"""

from __future__ import annotations

from tests.helpers import ROOT


def _key(client, **fields) -> tuple[int, dict[str, str]]:
    created = client.post("/api/keys", json={"name": "limited", **fields}, headers=ROOT).json()
    return created["id"], {"Authorization": f"Bearer {created['key']}"}


def test_a_limited_key_cannot_make_an_unlimited_key_or_revoke_others(client):
    other_id, other = _key(client)
    _, limited = _key(client, expires_in_days=1, token_quota=1000)
    attempts = [
        client.post("/api/keys", json={"name": "stronger"}, headers=limited),
        client.get("/api/keys", headers=limited),
        client.delete(f"/api/keys/{other_id}", headers=limited),
        client.get("/api/usage", headers=limited),
    ]
    assert [a.status_code for a in attempts] == [403] * 4
    assert {a.json()["error"]["code"] for a in attempts} == {"key_management"}
    assert "KB_ROOT_KEY" in attempts[0].json()["error"]["message"]
    assert client.get("/api/datasets", headers=other).status_code == 200, "the other key still works"
    assert [k["name"] for k in client.get("/api/keys", headers=ROOT).json()] == ["limited", "limited"]


def test_the_root_key_and_the_admin_session_still_manage_keys(client, admin_client):
    key_id, _ = _key(client)
    assert admin_client.post("/api/keys", json={"name": "from the admin"}).status_code == 201
    assert admin_client.delete(f"/api/keys/{key_id}").status_code == 200
    assert client.get("/api/usage", headers=ROOT).status_code == 200
