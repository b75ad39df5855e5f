"""The database stops while kb serves, then comes back: quick 503 JSON meanwhile, recovery without a restart.

Uses a PostgreSQL server of its own (not the shared test server) so stopping it disturbs no other test.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kb.config import Settings
from kb.db.engine import DATABASE_NAME, Database, ensure_database, sqlalchemy_url, start_embedded_server
from kb.db.migrate import upgrade
from kb.http.app import create_app
from tests.helpers import ADMIN_PASSWORD, ROOT, ROOT_KEY

# Far above a healthy answer (milliseconds) and far below a hang (the pool waits 10 s, connects time out at 5 s).
NO_HANG_SECONDS = 20

pytestmark = pytest.mark.slow


@pytest.fixture
def own_server() -> Iterator[object]:
    folder = Path(tempfile.mkdtemp(prefix="kb-outage-pg-"))
    server = start_embedded_server(folder / "pgdata")
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


def _timed(client: TestClient, method: str, path: str, **kwargs):
    started = time.monotonic()
    response = client.request(method, path, **kwargs)
    assert time.monotonic() - started < NO_HANG_SECONDS, f"{method} {path} hung while the database was down"
    return response


def test_requests_get_a_quick_503_while_the_database_is_down_and_work_again_after(own_server, tmp_path):
    ensure_database(own_server.get_uri(), DATABASE_NAME)
    url = sqlalchemy_url(own_server.get_uri(database=DATABASE_NAME))
    upgrade(url)
    settings = Settings(
        _env_file=None, data_dir=tmp_path / "data", database_url=url, root_key=ROOT_KEY, admin_password=ADMIN_PASSWORD
    )
    db = Database(url, pool_size=2)
    with TestClient(create_app(settings, db=db)) as client:
        assert client.post("/api/datasets", json={"name": "before"}, headers=ROOT).status_code == 201

        own_server.stop()
        health = _timed(client, "GET", "/healthz")
        assert health.status_code == 503 and health.json()["error"]["code"] == "database_unavailable"
        for method, path, body in [("GET", "/api/datasets", None), ("POST", "/api/datasets", {"name": "during"})]:
            response = _timed(client, method, path, json=body, headers=ROOT)
            assert response.status_code == 503, (path, response.text)
            assert response.json()["error"]["code"] == "database_unavailable"
            assert int(response.headers["retry-after"]) > 0
        page = _timed(client, "GET", "/admin/login")
        assert page.status_code in (200, 303, 503), "the login page answers (or says the service is unavailable)"

        own_server.start()
        assert client.get("/healthz").status_code == 200
        names = [d["name"] for d in client.get("/api/datasets", headers=ROOT).json()["items"]]
        assert names == ["before"]
        assert client.post("/api/datasets", json={"name": "after"}, headers=ROOT).status_code == 201
    db.dispose()
