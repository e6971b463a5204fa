"""webhooks: user default endpoint and secret, the event outbox and its delivery attempts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import repositories.models

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMPLETED_ONLY = sa.text("type = 'job.completed'")


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('webhook_url', sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column('webhook_secret', sa.String(length=100), nullable=True))

    op.create_table(
        'webhook_events',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('job_id', sa.String(length=36), nullable=False),
        sa.Column('user_id', sa.String(length=36), nullable=False),
        sa.Column('url', sa.String(length=2048), nullable=False),
        sa.Column('type', sa.String(length=40), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', repositories.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('claimed_until', repositories.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('created_at', repositories.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('delivered_at', repositories.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_webhook_events_job_id_jobs'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_webhook_events_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_events')),
    )
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_events_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_events_user_id'), ['user_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_events_next_attempt_at'), ['next_attempt_at'], unique=False)
        batch_op.create_index(
            'uq_webhook_events_job_id_completed',
            ['job_id'],
            unique=True,
            sqlite_where=COMPLETED_ONLY,
            postgresql_where=COMPLETED_ONLY,
        )

    op.create_table(
        'webhook_attempts',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('event_id', sa.String(length=40), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('started_at', repositories.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('status_code', sa.Integer(), nullable=True),
        sa.Column('error', sa.String(length=500), nullable=True),
        sa.Column('duration_ms', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ['event_id'], ['webhook_events.id'], name=op.f('fk_webhook_attempts_event_id_webhook_events'), ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_attempts')),
        sa.UniqueConstraint('event_id', 'number', name='uq_webhook_attempts_event_id_number'),
    )


def downgrade() -> None:
    op.drop_table('webhook_attempts')
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_index('uq_webhook_events_job_id_completed')
        batch_op.drop_index(batch_op.f('ix_webhook_events_next_attempt_at'))
        batch_op.drop_index(batch_op.f('ix_webhook_events_user_id'))
        batch_op.drop_index(batch_op.f('ix_webhook_events_job_id'))
    op.drop_table('webhook_events')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('webhook_secret')
        batch_op.drop_column('webhook_url')
