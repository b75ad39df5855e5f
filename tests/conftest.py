"""Shared fixtures: a real embedded PostgreSQL, a migrated template database, one fresh clone per test."""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from kb.config import Settings
from kb.db.engine import Database, ensure_database, libpq_url, sqlalchemy_url, start_embedded_server
from kb.db.migrate import upgrade
from kb.http.app import create_app

ROOT_KEY = "test-root-key"
ROOT = {"Authorization": f"Bearer {ROOT_KEY}"}
ADMIN_PASSWORD = "kb-admin-test-password"
TEMPLATE_DB = "kb_test_template"
REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config) -> None:
    """Give each run a private tmp_path root: pytest prunes the shared default root's older folders,
    which removed live files (an embedded server's data) from under another run on the same machine."""
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="kb-pytest-")
        config._kb_private_basetemp = config.option.basetemp


def pytest_unconfigure(config) -> None:
    private = getattr(config, "_kb_private_basetemp", None)
    if private:
        shutil.rmtree(private, ignore_errors=True)


def shared_data_dir() -> Path:
    """`shared/data` next to the checkout (CI lays it beside the clone), or KB_SHARED_DATA."""
    candidates = [os.environ.get("KB_SHARED_DATA"), REPO.parent / "shared" / "data", "/work/shared/data"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    pytest.skip("shared/data is not available next to the checkout (set KB_SHARED_DATA)")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_data_dir()


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A PostgreSQL server URL: KB_TEST_DATABASE_URL's server if given, else an embedded one for this run.

    The embedded server's data lives in its own temporary folder, not under pytest's tmp_path: pytest
    prunes old tmp_path folders of other runs, which would pull the data out from under a concurrent run.
    """
    external = os.environ.get("KB_TEST_DATABASE_URL")
    if external:
        yield libpq_url(external)
        return
    folder = Path(tempfile.mkdtemp(prefix="kb-test-pg-"))
    server = start_embedded_server(folder / "pgdata")
    yield server.get_uri()
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


def _database_url(server_url: str, name: str) -> str:
    from sqlalchemy import make_url

    return sqlalchemy_url(make_url(libpq_url(server_url)).set(database=name).render_as_string(hide_password=False))


@pytest.fixture(scope="session")
def template_database(server_url: str) -> str:
    """The schema built once per run with the real migrations; tests clone it."""
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
    ensure_database(server_url, TEMPLATE_DB)
    upgrade(_database_url(server_url, TEMPLATE_DB))
    return TEMPLATE_DB


@pytest.fixture
def database_url(server_url: str, template_database: str) -> Iterator[str]:
    """A fresh database cloned from the migrated template, dropped afterwards."""
    name = f"kb_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    yield _database_url(server_url, name)
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url, pool_size=5)
    yield database
    database.dispose()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        database_url=database_url,
        root_key=ROOT_KEY,
        admin_password=ADMIN_PASSWORD,
        torch_threads=2,
    )


@pytest.fixture
def app(settings: Settings, db: Database):
    return create_app(settings, db=db)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def csrf_token_of(html: str) -> str:
    """The CSRF token a page carries in its `<meta name="csrf-token">`."""
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


def log_in(client: TestClient, password: str = ADMIN_PASSWORD) -> str:
    """Log `client` in through the login form; it then sends the session's CSRF header by default."""
    form_token = csrf_token_of(client.get("/admin/login").text)
    response = client.post(
        "/admin/login", data={"password": password, "csrf_token": form_token}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    token = csrf_token_of(client.get("/admin").text)
    client.headers["X-CSRF-Token"] = token
    return token


@pytest.fixture
def admin_client(app) -> Iterator[TestClient]:
    """A client logged in to the admin pages with the session cookie; sends X-CSRF-Token on every request."""
    with TestClient(app) as test_client:
        log_in(test_client)
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """The app served by uvicorn on a loopback port in a thread: real HTTP for SDKs and browsers."""

    def __init__(self, app, port: int):
        import uvicorn

        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("live server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:
    with LiveServer(app, free_port()) as server:
        yield server
