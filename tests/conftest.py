"""Fixtures of every world: a real embedded PostgreSQL, a migrated template database, one fresh clone per test,
and clients of the world's `app`.

Each folder below is one world and its conftest.py says what `settings` and `app` mean there (server:
the defaults, web: fast fake models for the pages, admin: the ingestion worker in-process, pipeline: a
runtime on fake models). A test outside a world has no `app`, so it cannot silently run in another's."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from kb.db.engine import Database, ensure_database, libpq_url, sqlalchemy_url, start_embedded_server
from kb.db.migrate import upgrade
from tests.helpers import LiveServer, free_port, log_in
from tests.shared_data import require_shared_data

pytest_plugins = ["tests.browser_fixtures"]

TEMPLATE_DB = "kb_test_template"
# Models built from installed files (the e5 folder and ONNX exports: ~70 s and GBs once) are kept across tests
# and runs in one cache; a test about building them passes its own `model_cache`.
os.environ.setdefault("KB_MODEL_CACHE", str(Path(tempfile.gettempdir()) / "kb-test-model-cache"))


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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared_data()


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
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def admin_client(app) -> Iterator[TestClient]:
    """A client logged in to the admin pages with the session cookie; sends X-CSRF-Token on every request."""
    with TestClient(app) as test_client:
        log_in(test_client)
        yield test_client


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:
    with LiveServer(app, free_port()) as server:
        yield server
