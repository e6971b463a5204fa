"""job options: model, task, prompt, timestamps, span and speakers; language probability; voices

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('language_probability', sa.Float(), nullable=True))
        batch.add_column(sa.Column('options', sa.JSON(), nullable=True))
    with op.batch_alter_table('chunks') as batch:
        batch.add_column(sa.Column('voices', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('chunks') as batch:
        batch.drop_column('voices')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('options')
        batch.drop_column('language_probability')
