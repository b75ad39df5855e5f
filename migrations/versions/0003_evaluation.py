"""evaluation sets, items, runs and per-item results

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:05:00

Users keep questions with expected answers per dataset, run them against a search (or app) configuration
as a background job, and compare runs. Results reference their item so two runs pair up question by question.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_JSON_LIST = sa.text("'[]'::jsonb")
_JSON_DICT = sa.text("'{}'::jsonb")


def _created() -> sa.Column:
    return sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False)


def upgrade() -> None:
    op.create_table(
        'eval_set',
        sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column('dataset_id', sa.BigInteger(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('description', sa.Text(), server_default='', nullable=False),
        _created(),
        sa.ForeignKeyConstraint(['dataset_id'], ['dataset.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('dataset_id', 'name', name='uq_eval_set_dataset_name'),
    )
    op.create_table(
        'eval_item',
        sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column('set_id', sa.BigInteger(), nullable=False),
        sa.Column('question', sa.Text(), nullable=False),
        sa.Column('answers', postgresql.JSONB(astext_type=sa.Text()), server_default=_JSON_LIST, nullable=False),
        sa.Column('source', sa.Text(), nullable=True),
        sa.Column('origin', sa.String(length=20), server_default='manual', nullable=False),
        sa.Column('status', sa.String(length=20), server_default='active', nullable=False),
        sa.Column('message_id', sa.BigInteger(), nullable=True),
        _created(),
        sa.ForeignKeyConstraint(['set_id'], ['eval_set.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['message_id'], ['message.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_eval_item_set', 'eval_item', ['set_id', 'id'], unique=False)
    op.create_table(
        'eval_run',
        sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column('set_id', sa.BigInteger(), nullable=False),
        sa.Column('dataset_id', sa.BigInteger(), nullable=False),
        sa.Column('config', postgresql.JSONB(astext_type=sa.Text()), server_default=_JSON_DICT, nullable=False),
        sa.Column('status', sa.String(length=20), server_default='queued', nullable=False),
        sa.Column('stage', sa.String(length=50), server_default='queued', nullable=False),
        sa.Column('progress', sa.Integer(), server_default='0', nullable=False),
        sa.Column('cancel_requested', sa.Boolean(), server_default='false', nullable=False),
        sa.Column('totals', postgresql.JSONB(astext_type=sa.Text()), server_default=_JSON_DICT, nullable=False),
        sa.Column('coverage', postgresql.JSONB(astext_type=sa.Text()), server_default=_JSON_DICT, nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        _created(),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['set_id'], ['eval_set.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['dataset_id'], ['dataset.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_eval_run_set', 'eval_run', ['set_id', 'id'], unique=False)
    op.create_table(
        'eval_result',
        sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column('run_id', sa.BigInteger(), nullable=False),
        sa.Column('item_id', sa.BigInteger(), nullable=False),
        sa.Column('answer_rank', sa.Integer(), nullable=True),
        sa.Column('source_rank', sa.Integer(), nullable=True),
        sa.Column('in_corpus', sa.Boolean(), server_default='true', nullable=False),
        sa.Column('quotes', postgresql.JSONB(astext_type=sa.Text()), server_default=_JSON_LIST, nullable=False),
        sa.Column('reply', sa.Text(), nullable=True),
        sa.Column('answer_hit', sa.Boolean(), nullable=True),
        sa.Column('citation_hit', sa.Boolean(), nullable=True),
        sa.Column('latency_ms', sa.Float(), server_default='0', nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['eval_run.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['item_id'], ['eval_item.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('run_id', 'item_id', name='uq_eval_result_run_item'),
    )


def downgrade() -> None:
    op.drop_table('eval_result')
    op.drop_index('ix_eval_run_set', table_name='eval_run')
    op.drop_table('eval_run')
    op.drop_index('ix_eval_item_set', table_name='eval_item')
    op.drop_table('eval_item')
    op.drop_table('eval_set')
