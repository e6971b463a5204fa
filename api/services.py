"""Job submission, limits, cancel and retry: the steps between a validated request and the repositories."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath

from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from api.submission import JobOptions, filename_from_url
from api.upload import ReceivedUpload, safe_extension, safe_filename
from core.enums import JobStatus, Priority
from core.errors import (
    BadRequest,
    Conflict,
    Invalid,
    PayloadTooLarge,
    PaymentRequired,
    ServiceUnavailable,
    TooManyRequests,
    UnsupportedMedia,
)
from core.logging import get_logger
from core.media import EmptyAudioError, MediaInfo, NotAudioError, probe
from core.queues import QueueManager
from core.tiers import TierPolicy, policy_for
from repositories.chunks import CLOSED, ChunkRepository
from repositories.jobs import JobRepository
from repositories.models import Job, User
from repositories.uploads import UploadRepository
from storage.base import InvalidKey, Storage, check_key
from storage.keys import job_prefix, source_key

log = get_logger(__name__)

# What a client told "too many active jobs" should wait before trying again.
ACTIVE_RETRY_AFTER_SECONDS = 30


def new_job_id() -> str:
    return str(uuid.uuid4())


def month_start(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Usage:
    month: str
    seconds_used: float
    active_jobs: int
    policy: TierPolicy

    @property
    def seconds_left(self) -> float:
        return max(0.0, self.policy.monthly_minutes * 60 - self.seconds_used)


def usage(session: Session, user: User) -> Usage:
    jobs, start = JobRepository(session), month_start()
    return Usage(
        month=start.strftime("%Y-%m"),
        seconds_used=jobs.billed_seconds(user.id, start),
        active_jobs=jobs.count_active(user.id),
        policy=policy_for(user.tier),
    )


def check_can_submit(session: Session, user: User) -> Usage:
    """Refuse new work before any byte is read: too many active jobs (429), quota spent (402)."""
    current = usage(session, user)
    if current.active_jobs >= current.policy.max_active_jobs:
        raise TooManyRequests(
            f"you have {current.active_jobs} active jobs; the {user.tier.value} tier allows "
            f"{current.policy.max_active_jobs} at a time",
            retry_after=ACTIVE_RETRY_AFTER_SECONDS,
        )
    if current.seconds_left <= 0:
        minutes, tier = current.policy.monthly_minutes, user.tier.value
        raise PaymentRequired(f"this month's {minutes} audio minutes of the {tier} tier are used up")
    return current


def check_audio(storage: Storage, upload: ReceivedUpload) -> MediaInfo:
    """Reject an upload that is empty or not decodable audio."""
    if upload.size == 0:
        raise BadRequest("the file is empty")
    try:
        with storage.local_path(upload.key) as path:
            return probe(path)
    except EmptyAudioError as exc:
        raise BadRequest(str(exc)) from exc
    except NotAudioError as exc:
        raise UnsupportedMedia(str(exc)) from exc


def check_duration(current: Usage, duration: float | None, tier: str) -> None:
    """When the container states its duration, enforce the tier's limits now (else `prepare` will)."""
    if duration is None:
        return
    if duration > current.policy.max_duration_minutes * 60:
        raise Invalid(duration_message(duration, current.policy.max_duration_minutes, tier))
    if duration > current.seconds_left:
        raise PaymentRequired(
            f"the audio is {duration / 60:.1f} min long but only {current.seconds_left / 60:.1f} "
            f"of this month's audio minutes are left"
        )


def duration_message(duration: float, max_minutes: int, tier: str) -> str:
    return (
        f"the audio is {duration / 60:.1f} min long; the {tier} tier allows up to {max_minutes} min per file"
    )


def accept_stored_audio(
    session: Session,
    storage: Storage,
    job_id: str,
    user: User,
    upload: ReceivedUpload,
    options: JobOptions,
    current: Usage,
) -> Job:
    """Audio already in storage becomes a job, if it decodes and fits the tier's limits."""
    duration = check_audio(storage, upload).duration_seconds
    check_duration(current, duration, user.tier.value)
    return create_job(session, job_id, user, upload, options, duration)


def create_job(
    session: Session,
    job_id: str,
    user: User,
    upload: ReceivedUpload,
    options: JobOptions,
    duration: float | None,
) -> Job:
    return JobRepository(session).create(
        id=job_id,
        user_id=user.id,
        filename=upload.filename,
        content_type=upload.content_type,
        size_bytes=upload.size,
        source_key=upload.key,
        # The container's figure reserves the minutes until `prepare` records the decoded length.
        audio_duration_seconds=duration,
        **_option_columns(options),
    )


def create_url_job(
    session: Session, job_id: str, user: User, url: str, filename: str | None, options: JobOptions
) -> Job:
    """A job whose audio the worker fetches first: its size and length are known only then."""
    name = safe_filename(filename or filename_from_url(url))
    return JobRepository(session).create(
        id=job_id,
        user_id=user.id,
        filename=name,
        size_bytes=0,
        source_key=source_key(job_id, safe_extension(name)),
        source_url=url,
        **_option_columns(options),
    )


def _option_columns(options: JobOptions) -> dict[str, object]:
    return {
        "priority": options.priority,
        "language": options.language,
        "backend": options.backend,
        "mode": options.mode,
        "webhook_url": options.webhook_url,
    }


def claim_uploaded_object(
    session: Session, storage: Storage, user: User, object_key: str, job_id: str, max_bytes: int
) -> ReceivedUpload:
    """Move a direct upload of the caller's to be the job's source (without copying it through here).

    The upload's row goes in the request's transaction: a refused submission keeps it (and the
    caller's object), a job takes it once."""
    missing = Invalid(
        f"no uploaded object '{object_key}' of yours: PUT the file to the `upload_url` that "
        "POST /v1/uploads returned, then submit its `object_key`"
    )
    if UploadRepository(session).claim(object_key, user.id) is None:
        raise missing
    try:
        size = storage.size(check_key(object_key))
    except (FileNotFoundError, InvalidKey):
        raise missing from None
    if size > max_bytes:
        raise PayloadTooLarge(f"the file is larger than the {max_bytes // (1024 * 1024)} MB limit")
    target = source_key(job_id, safe_extension(object_key))
    try:
        storage.move(object_key, target)
    except FileNotFoundError:  # a concurrent submit of the same object took it first
        raise missing from None
    return ReceivedUpload(key=target, filename=PurePosixPath(object_key).name, size=size)


def enqueue_or_withdraw(
    session: Session, storage: Storage, queues: QueueManager, job_id: str, priority: Priority
) -> None:
    """Runs after commit. If Redis refuses the work, take the job back so nothing is left half-made."""
    try:
        queues.enqueue_prepare(job_id, priority)
    except RedisError as exc:
        log.error("job.enqueue_failed", job_id=job_id, error=str(exc))
        withdraw_job(session, storage, job_id)
        raise ServiceUnavailable("the job queue is unavailable, try again shortly") from exc


def withdraw_job(session: Session, storage: Storage, job_id: str) -> None:
    """Remove a job that was committed but could not be queued, with its files."""
    jobs = JobRepository(session)
    job = jobs.get(job_id)
    if job is not None:
        jobs.delete(job)
    session.commit()
    storage.delete_prefix(job_prefix(job_id))


def cancel_job(session: Session, job: Job) -> list[int]:
    """Cancel a pending or processing job; returns the chunks whose queued work should be dropped."""
    if not job.status.is_active:
        raise Conflict(f"the job is {job.status.value}; only pending or processing jobs can be canceled")
    chunks = ChunkRepository(session)
    indexes = [c.chunk_index for c in chunks.list_for_job(job.id) if c.status not in CLOSED]
    chunks.cancel_open(job.id)
    JobRepository(session).cancel(job)
    return indexes


def retry_job(session: Session, user: User, job: Job) -> list[int] | None:
    """Put a failed job back in the pipeline. Returns the chunks to redo, or None to prepare again."""
    if job.status != JobStatus.FAILED:
        raise Conflict(f"the job is {job.status.value}; only failed jobs can be retried")
    check_can_submit(session, user)
    planned = job.chunks_total is not None
    indexes = ChunkRepository(session).reopen_failed(job.id) if planned else None
    JobRepository(session).reopen(job, planned=planned)
    return indexes


@dataclass(frozen=True)
class Stats:
    by_status: dict[JobStatus, int]
    audio_seconds: float
    average_processing_seconds: float | None

    @property
    def success_rate(self) -> float | None:
        """Completed over finished (completed + failed); canceled jobs are the user's choice."""
        completed, failed = (
            self.by_status.get(JobStatus.COMPLETED, 0),
            self.by_status.get(JobStatus.FAILED, 0),
        )
        return completed / (completed + failed) if completed + failed else None


def job_stats(session: Session, user_id: str | None) -> Stats:
    jobs = JobRepository(session)
    audio, average = jobs.completed_figures(user_id)
    return Stats(
        by_status=jobs.count_by_status(user_id), audio_seconds=audio, average_processing_seconds=average
    )


def purge_old_jobs(session: Session, older_than_days: int) -> list[str]:
    """Delete finished jobs older than the cutoff; the caller removes their files after commit."""
    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
    return JobRepository(session).delete_older_than(cutoff)
