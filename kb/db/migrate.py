"""Apply and revert the Alembic migrations from code (`kb db upgrade`, `kb serve`, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, pool, text

from kb.db.engine import sqlalchemy_url

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# Any constant shared by every kb process: two processes starting at once must not migrate together.
_MIGRATION_LOCK = 0x6B62_0001


def _run(database_url: str, action, revision: str) -> None:
    engine = create_engine(sqlalchemy_url(database_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
            conn.commit()
            try:
                config = Config()
                config.set_main_option("script_location", str(MIGRATIONS_DIR))
                config.attributes["connection"] = conn
                action(config, revision)
                conn.commit()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
                conn.commit()
    finally:
        engine.dispose()


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema up to `revision`."""
    _run(database_url, command.upgrade, revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    """Take the schema down to `revision`."""
    _run(database_url, command.downgrade, revision)
