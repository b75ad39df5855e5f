"""The migrations build exactly the schema the ORM tables describe (Alembic's own comparison)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, MetaData, Text, create_engine

from kb.db.tables import Base


def _differences(database_url: str, metadata: MetaData) -> list:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()


def test_the_migrated_schema_is_the_one_the_tables_describe(database_url):
    differences = _differences(database_url, Base.metadata)
    listed = "\n".join(map(repr, differences))
    assert differences == [], f"write a migration for these (or fix kb/db/tables.py):\n{listed}"


def test_a_column_the_migrations_lack_is_noticed(database_url):
    metadata = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(metadata)
    metadata.tables["dataset"].append_column(Column("colour", Text))
    assert [d[0] for d in _differences(database_url, metadata)] == ["add_column"]
