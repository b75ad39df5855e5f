"""full-text statistics per dataset, for pruned BM25

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:20:00

`fulltext_stats` keeps a dataset's searchable chunk count and mean length, `fulltext_term` the
document frequency of its common lexemes (held by 50 chunks or more), so that full-text search
can rank without reading every posting of a common word (kb.db.store.fulltext_stats). Existing
datasets are backfilled here, in one pass over their chunks; from then on the worker refreshes a
dataset after an ingestion that changed its size by more than a tenth.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_SEARCHABLE = (
    "(c.kind = 'manual' OR EXISTS "
    "(SELECT 1 FROM collection col WHERE col.id = c.collection_id AND col.status = 'ready'))"
)


def upgrade() -> None:
    op.create_table('fulltext_stats',
    sa.Column('dataset_id', sa.BigInteger(), nullable=False),
    sa.Column('chunks', sa.BigInteger(), nullable=False),
    sa.Column('mean_length', sa.Float(), nullable=False),
    sa.Column('refreshed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['dataset.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('dataset_id')
    )
    op.create_table('fulltext_term',
    sa.Column('dataset_id', sa.BigInteger(), nullable=False),
    sa.Column('lexeme', sa.Text(), nullable=False),
    sa.Column('df', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['dataset.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('dataset_id', 'lexeme')
    )
    op.execute(
        "INSERT INTO fulltext_term (dataset_id, lexeme, df) SELECT d.id, s.word, s.ndoc FROM dataset d, "
        "LATERAL ts_stat($q$SELECT c.fts FROM chunk c WHERE c.dataset_id = $q$ || d.id || "
        f"$q$ AND c.fts IS NOT NULL AND {_SEARCHABLE}$q$) s WHERE s.ndoc >= 50"
    )
    op.execute(
        "INSERT INTO fulltext_stats (dataset_id, chunks, mean_length) "
        "SELECT c.dataset_id, count(*), coalesce(avg(length(c.fts)), 1) FROM chunk c "
        f"WHERE c.fts IS NOT NULL AND {_SEARCHABLE} GROUP BY c.dataset_id"
    )


def downgrade() -> None:
    op.drop_table('fulltext_term')
    op.drop_table('fulltext_stats')
