"""Periodic work of the fleet: delete jobs past the retention period, with their files, direct
uploads that were never submitted, and chunk audio of jobs that no longer exist."""

from datetime import UTC, datetime, timedelta

from core.db import session_scope
from core.logging import get_logger
from repositories.jobs import JobRepository
from repositories.uploads import UploadRepository
from storage.keys import JOBS, chunks_prefix, job_prefix
from worker.context import WorkerContext, current

log = get_logger(__name__)

# The first run after a worker fleet starts: soon, but not in the middle of start-up.
FIRST_RUN_SECONDS = 60
# An upload URL is checked when the PUT starts, so a large file may still be arriving after its
# URL expired: leave it this long before taking it for abandoned.
UPLOAD_GRACE = timedelta(days=1)
# Job folders one sweep looks at, so that a run costs the same however much storage holds. The next
# run goes on after the last folder this one looked at (kept in Redis under the cursor key); past
# the last folder, it starts from the first again.
CHUNK_SWEEP_BATCH = 500
CHUNK_SWEEP_CURSOR = "verbatim:chunk-sweep:after"


def apply_retention() -> int:
    """Delete finished jobs older than VERBATIM_RETENTION_DAYS and what no job needs any more (see
    the sweeps), then schedule the next run."""
    ctx = current()
    try:
        sweep_uploads(ctx)
        deleted = purge(ctx, ctx.settings.retention_days)
        sweep_orphan_chunks(ctx)
        return deleted
    finally:
        ctx.queues.retention_ran()
        ctx.queues.schedule_retention(ctx.settings.retention_interval_minutes * 60)


def purge(ctx: WorkerContext, older_than_days: int) -> int:
    with session_scope(ctx.sessions) as session:
        deleted = JobRepository(session).delete_older_than(older_than_days)
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


def sweep_orphan_chunks(ctx: WorkerContext) -> int:
    """Delete the chunk audio of jobs that no longer exist; returns how many objects went.

    A job deleted while `prepare` cuts it gets chunks written after its files were removed, and a
    crash between a deletion's commit and its file removal leaves files too. Never a live job's:
    a job exists before its first chunk is written, so listing before reading the rows sees every
    job with chunks alive. Only `chunks/` goes: a source without a row may be an upload whose job
    is still being committed.
    """
    redis = ctx.queues.redis
    after = redis.get(CHUNK_SWEEP_CURSOR)
    if isinstance(after, bytes):
        after = after.decode()
    folders = ctx.storage.list_folders(JOBS, after=after, limit=CHUNK_SWEEP_BATCH)
    with session_scope(ctx.sessions) as session:
        live = JobRepository(session).existing_ids(folders)
    orphans = [job_id for job_id in folders if job_id not in live]
    removed = sum(ctx.storage.delete_prefix(chunks_prefix(job_id)) for job_id in orphans)
    if len(folders) == CHUNK_SWEEP_BATCH:
        redis.set(CHUNK_SWEEP_CURSOR, folders[-1])
    else:  # the last folder was looked at: start from the first again
        redis.delete(CHUNK_SWEEP_CURSOR)
    if removed:
        log.info("chunks.swept", deleted=removed, folders=len(folders))
    return removed
