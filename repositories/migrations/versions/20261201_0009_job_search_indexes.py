"""the job history: its order fully indexed, and trigram indexes for its search (PostgreSQL)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:00:00

`GET /v1/jobs?q=` looks for a substring of the filename or the transcript, in any case: ILIKE
'%…%', which a btree cannot serve and pg_trgm's GIN indexes can. pg_trgm ships with PostgreSQL and
is a trusted extension (PostgreSQL 13+): the database's owner may create it, no superuser needed.
SQLite, the embedded default, keeps scanning: its tables hold one machine's jobs.

The list orders by (created_at, id): with id in the owner's index a page is a walk of the index
that stops after `limit` rows, with no sort of the owner's whole history.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("filename", "transcript_text")


def _history_index(*columns: str) -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_user_id_created_at")
        batch_op.create_index("ix_jobs_user_id_created_at", list(columns), unique=False)


def upgrade() -> None:
    _history_index("user_id", "created_at", "id")
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for column in COLUMNS:
        op.create_index(
            f"ix_jobs_{column}_trgm",
            "jobs",
            [column],
            postgresql_using="gin",
            postgresql_ops={column: "gin_trgm_ops"},
        )


def downgrade() -> None:
    _history_index("user_id", "created_at")
    if op.get_context().dialect.name != "postgresql":
        return
    for column in COLUMNS:
        op.drop_index(f"ix_jobs_{column}_trgm", table_name="jobs")
    # The extension stays: other schemas of this database may use it.
