"""Alembic environment: runs migrations online against kb's database."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from kb.config import Settings
from kb.db.engine import resolve_database_url, sqlalchemy_url
from kb.db.tables import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # kb.db.migrate's way: resolving the configured database here could start another server
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.attributes.get("database_url") or resolve_database_url(Settings())
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
