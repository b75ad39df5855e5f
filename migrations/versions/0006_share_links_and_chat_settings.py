"""share links, chat settings of apps, and who started a chat

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:40:00

Share links give an app a public chat page (and an embeddable one) without an admin login; a chat
started through one records the link and the visitor's browser, so the admin's logs can show it
and a visitor sees only their own conversations. `app.chat_settings` holds the answer's temperature
and length, the opening message and the suggested questions.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        'app',
        sa.Column('chat_settings', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    )
    op.create_table('share_link',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('app_id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.Text(), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('rate_limit_per_minute', sa.Integer(), nullable=True),
    sa.Column('allowed_origins', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('use_count', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('tokens_used', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['app.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token')
    )
    op.create_index(op.f('ix_share_link_app_id'), 'share_link', ['app_id'], unique=False)
    op.add_column('chat', sa.Column('share_link_id', sa.BigInteger(), nullable=True))
    op.add_column('chat', sa.Column('visitor_id', sa.String(length=64), nullable=True))
    op.create_foreign_key('chat_share_link_id_fkey', 'chat', 'share_link', ['share_link_id'], ['id'], ondelete='SET NULL')
    op.create_index('ix_chat_share_visitor', 'chat', ['share_link_id', 'visitor_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_chat_share_visitor', table_name='chat')
    op.drop_constraint('chat_share_link_id_fkey', 'chat', type_='foreignkey')
    op.drop_column('chat', 'visitor_id')
    op.drop_column('chat', 'share_link_id')
    op.drop_index(op.f('ix_share_link_app_id'), table_name='share_link')
    op.drop_table('share_link')
    op.drop_column('app', 'chat_settings')
