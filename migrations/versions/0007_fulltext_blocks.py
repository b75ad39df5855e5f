"""impact-ordered postings blocks for full-text search at scale

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 06:00:00

`fulltext_block` keeps each lexeme's postings of a dataset outside the chunk rows, best BM25 impact
first, so that a search reads a common word's best holders without fetching a chunk row per posting
(kb.db.store.postings). Existing datasets get their blocks here, in one pass over their chunks;
`fulltext_stats.blocks` records how many a refresh wrote, so the worker can tell when appended small
blocks have piled up.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# kb.db.store.postings._BUILD as of this revision (BLOCK 128, k1 1.2, b 0.75), for a range of a dataset's chunks.
_ORDER = "ORDER BY s.impact DESC, s.id"
_BUILD = f"""
INSERT INTO fulltext_block (dataset_id, lexeme, bound, chunk_ids, tfs, lengths)
SELECT :d, g.lexeme, g.impacts[i], g.ids[i:i + 127], g.tfs[i:i + 127], g.dls[i:i + 127]
FROM (
    SELECT s.lexeme, array_agg(s.id {_ORDER}) AS ids, array_agg(s.tf {_ORDER}) AS tfs,
           array_agg(s.dl {_ORDER}) AS dls, array_agg(s.impact {_ORDER}) AS impacts
    FROM (
        SELECT c.id, u.lexeme, CAST(least(cardinality(u.positions), 32767) AS smallint) AS tf,
               CAST(least(length(c.fts), 32767) AS smallint) AS dl,
               cardinality(u.positions) * 2.2 / (cardinality(u.positions)
                 + 1.2 * (1 - 0.75 + 0.75 * length(c.fts) / :avgdl)) AS impact
        FROM chunk c, unnest(c.fts) u
        WHERE c.dataset_id = :d AND c.fts IS NOT NULL AND c.id >= :start AND c.id < :end
        OFFSET 0
    ) s
    GROUP BY s.lexeme
) g, generate_series(1, cardinality(g.ids), 128) AS i
"""


def upgrade() -> None:
    op.create_table('fulltext_block',
    sa.Column('dataset_id', sa.BigInteger(), nullable=False),
    sa.Column('lexeme', sa.Text(), nullable=False),
    sa.Column('bound', postgresql.REAL(), nullable=False),
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('chunk_ids', postgresql.ARRAY(sa.BigInteger()), nullable=False),
    sa.Column('tfs', postgresql.ARRAY(sa.SmallInteger()), nullable=False),
    sa.Column('lengths', postgresql.ARRAY(sa.SmallInteger()), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['dataset.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('dataset_id', 'lexeme', 'bound', 'id')
    )
    op.add_column('fulltext_stats', sa.Column('blocks', sa.BigInteger(), server_default='0', nullable=False))
    conn = op.get_bind()
    datasets = conn.execute(
        sa.text(
            "SELECT d.id, coalesce(s.mean_length, 1) AS avgdl FROM dataset d "
            "LEFT JOIN fulltext_stats s ON s.dataset_id = d.id"
        )
    ).all()
    conn.execute(sa.text("SET LOCAL work_mem = '256MB'"))
    for dataset_id, avgdl in datasets:
        low, high, count = conn.execute(
            sa.text("SELECT min(id), max(id), count(*) FROM chunk WHERE dataset_id = :d"), {"d": dataset_id}
        ).one()
        step = max(1, (high - low + 1) * 100_000 // count) if count else 1
        for start in range(low or 0, (high or -1) + 1, step):  # ~100k chunks per sort (kb.db.store.postings)
            conn.execute(
                sa.text(_BUILD),
                {"d": dataset_id, "avgdl": max(1.0, float(avgdl)), "start": start, "end": start + step},
            )
    conn.execute(
        sa.text(
            "UPDATE fulltext_stats s SET blocks = (SELECT count(*) FROM fulltext_block b WHERE b.dataset_id = s.dataset_id)"
        )
    )


def downgrade() -> None:
    op.drop_column('fulltext_stats', 'blocks')
    op.drop_table('fulltext_block')
