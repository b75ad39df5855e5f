"""Real kb processes; some tests also run against an external PostgreSQL started here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kb.db.migrate import upgrade
from tests.helpers import free_port
from tests.processes.external_postgres import ExternalPostgres


@pytest.fixture
def external_database_url(tmp_path: Path) -> Iterator[str]:
    """A migrated `kb` database on a PostgreSQL server of this test's own (port, data directory, password)."""
    server = ExternalPostgres(tmp_path / "external-pg", free_port()).start()
    try:
        url = server.create_database("kb")
        upgrade(url)
        yield url
    finally:
        server.stop()
