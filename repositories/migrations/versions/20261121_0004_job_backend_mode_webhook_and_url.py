"""job backend, mode, webhook url, source url; chunk provider transcript id

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source_url', sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column('backend', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('mode', sa.String(length=20), server_default='mono', nullable=False))
        batch_op.add_column(sa.Column('webhook_url', sa.String(length=2048), nullable=True))

    with op.batch_alter_table('chunks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('provider_transcript_id', sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('chunks', schema=None) as batch_op:
        batch_op.drop_column('provider_transcript_id')

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('webhook_url')
        batch_op.drop_column('mode')
        batch_op.drop_column('backend')
        batch_op.drop_column('source_url')
