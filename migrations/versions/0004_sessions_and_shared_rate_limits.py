"""admin sessions stored (revocable) and rate-limit buckets shared by every process

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:30:00

Logout and a password change must end a session, so the session ids a cookie names are kept here.
Rate limits were token buckets in each process's memory, so N `kb serve` replicas allowed N times
the limit; the buckets now live in one small table updated with one atomic upsert per check.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'admin_session',
        sa.Column('id_hash', sa.String(length=64), primary_key=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index('ix_admin_session_expires_at', 'admin_session', ['expires_at'])
    op.create_table(
        'rate_bucket',
        sa.Column('key', sa.String(length=200), primary_key=True),
        sa.Column('tokens', sa.Float(), nullable=False),
        sa.Column('allowed', sa.Boolean(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('rate_bucket')
    op.drop_index('ix_admin_session_expires_at', table_name='admin_session')
    op.drop_table('admin_session')
