"""Periodic work of the fleet: delete jobs past the retention period, with their files."""

from datetime import UTC, datetime, timedelta

from core.db import session_scope
from core.logging import get_logger
from repositories.jobs import JobRepository
from storage.keys import job_prefix
from worker.context import WorkerContext, current

log = get_logger(__name__)

# The first run after a worker fleet starts: soon, but not in the middle of start-up.
FIRST_RUN_SECONDS = 60


def apply_retention() -> int:
    """Delete finished jobs older than VERBATIM_RETENTION_DAYS, then schedule the next run."""
    ctx = current()
    try:
        return purge(ctx, ctx.settings.retention_days)
    finally:
        ctx.queues.retention_ran()
        ctx.queues.schedule_retention(ctx.settings.retention_interval_minutes * 60)


def purge(ctx: WorkerContext, older_than_days: int) -> int:
    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
    with session_scope(ctx.sessions) as session:
        deleted = JobRepository(session).delete_older_than(cutoff)
    # Files go after the rows are gone: a crash in between leaves orphan files, never a job
    # whose audio has vanished.
    for job_id in deleted:
        ctx.storage.delete_prefix(job_prefix(job_id))
    log.info("retention.applied", deleted=len(deleted), older_than_days=older_than_days)
    return len(deleted)
