"""Periodic work of the fleet: delete jobs past the retention period, with their files, and direct
uploads that were never submitted."""

from datetime import UTC, datetime, timedelta

from core.db import session_scope
from core.logging import get_logger
from repositories.jobs import JobRepository
from repositories.uploads import UploadRepository
from storage.keys import job_prefix
from worker.context import WorkerContext, current

log = get_logger(__name__)

# The first run after a worker fleet starts: soon, but not in the middle of start-up.
FIRST_RUN_SECONDS = 60
# An upload URL is checked when the PUT starts, so a large file may still be arriving after its
# URL expired: leave it this long before taking it for abandoned.
UPLOAD_GRACE = timedelta(days=1)


def apply_retention() -> int:
    """Delete finished jobs older than VERBATIM_RETENTION_DAYS, then schedule the next run."""
    ctx = current()
    try:
        sweep_uploads(ctx)
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


def sweep_uploads(ctx: WorkerContext) -> int:
    """Delete direct uploads never submitted, a day after their URL expired, with their objects."""
    with session_scope(ctx.sessions) as session:
        keys = UploadRepository(session).take_expired(datetime.now(UTC) - UPLOAD_GRACE)
    for key in keys:
        ctx.storage.delete(key)
    if keys:
        log.info("uploads.swept", deleted=len(keys))
    return len(keys)
