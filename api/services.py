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
    NotFound,
    PayloadTooLarge,
    PaymentRequired,
    ServiceUnavailable,
    TooManyRequests,
    UnsupportedMedia,
)
from core.logging import get_logger
from core.media import EmptyAudioError, MediaInfo, NotAudioError, probe
from core.options import TranscriptionOptions
from core.queues import QueueManager
from core.tiers import TierPolicy, month_start, policy_for
from repositories.chunks import ChunkRepository
from repositories.jobs import JobRepository
from repositories.models import Job, User
from repositories.reservations import ReservationRepository
from repositories.uploads import UploadRepository
from repositories.users import UserRepository
from storage.base import InvalidKey, Storage, check_key
from storage.keys import job_prefix, source_key

log = get_logger(__name__)

# What a client told "too many active jobs" should wait before trying again.
ACTIVE_RETRY_AFTER_SECONDS = 30
# How long a submission's reservation holds its slot: a request that died without releasing it
# stops blocking its user's next submissions then. (An upload still streaming after that is
# checked again, exactly, when its job is created.)
RESERVATION_SECONDS = 3600


def new_job_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Usage:
    month: str
    seconds_used: float
    active_jobs: int
    policy: TierPolicy
    # Submissions whose audio is still on its way: each holds one of the active jobs' slots.
    uploads_in_flight: int = 0

    @property
    def seconds_left(self) -> float:
        return self.policy.seconds_left(self.seconds_used)


def usage(session: Session, user: User) -> Usage:
    jobs, start = JobRepository(session), month_start()
    return Usage(
        month=start.strftime("%Y-%m"),
        seconds_used=jobs.billed_seconds(user.id, start),
        active_jobs=jobs.count_active(user.id),
        policy=policy_for(user.tier),
        uploads_in_flight=ReservationRepository(session).count_live(user.id, datetime.now(UTC)),
    )


def check_can_submit(session: Session, user: User) -> Usage:
    """Refuse new work before any byte is read: too many active jobs (429), quota spent (402).

    A read, so two requests may both pass it: `reserve_submission` and `admit` are the exact checks."""
    current = usage(session, user)
    taken = current.active_jobs + current.uploads_in_flight
    if taken >= current.policy.max_active_jobs:
        uploading = f" ({current.uploads_in_flight} of them uploading)" if current.uploads_in_flight else ""
        raise TooManyRequests(
            f"you have {taken} active jobs{uploading}; the {user.tier.value} tier allows "
            f"{current.policy.max_active_jobs} at a time",
            retry_after=ACTIVE_RETRY_AFTER_SECONDS,
        )
    if current.seconds_left <= 0:
        minutes, tier = current.policy.monthly_minutes, user.tier.value
        raise PaymentRequired(f"this month's {minutes} audio minutes of the {tier} tier are used up")
    return current


def reserve_submission(session: Session, user: User) -> str:
    """Take one of the user's active-job slots for a submission whose audio is still to come, or
    refuse (429, 402). Returns the reservation's id; the caller commits it before reading the body.

    The user's row is locked first, so of concurrent submissions exactly as many as there are free
    slots get one."""
    UserRepository(session).lock(user.id)
    reservations, now = ReservationRepository(session), datetime.now(UTC)
    reservations.drop_expired(user.id, now)
    check_can_submit(session, user)
    return reservations.take(user.id, now + timedelta(seconds=RESERVATION_SECONDS)).id


def release_reservation(session: Session, reservation_id: str) -> None:
    ReservationRepository(session).release(reservation_id)


def admit(session: Session, user: User, reservation_id: str, duration: float | None) -> None:
    """In the transaction that creates the job: the job takes the reservation's place, and the
    limits are checked again under the user's lock, the monthly minutes now with the audio's
    duration where it is known (concurrent submissions cannot together pass the quota)."""
    UserRepository(session).lock(user.id)
    release_reservation(session, reservation_id)
    check_duration(check_can_submit(session, user), duration, user.tier.value)


def check_audio(storage: Storage, upload: ReceivedUpload) -> MediaInfo:
    """Reject an upload that is empty or not decodable audio."""
    if upload.size == 0:
        raise BadRequest("the file is empty")
    try:
        # Ranged reads: the header and half a second of audio, not the whole object.
        with storage.open_seekable(upload.key) as source:
            return probe(source)
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
    reservation_id: str,
) -> Job:
    """Audio already in storage becomes a job, if it decodes and fits the tier's limits."""
    duration = check_audio(storage, upload).duration_seconds  # slow: before the user's lock
    seconds = transcribed_seconds(options.transcription, duration)
    admit(session, user, reservation_id, seconds)
    return create_job(session, job_id, user, upload, options, seconds)


def transcribed_seconds(options: TranscriptionOptions, duration: float | None) -> float | None:
    """The seconds of the file the job transcribes, which the limits check and the bill counts:
    the span `start`..`end` asks for, within the file (None while its duration is unknown). A
    `start` at or past the file's end is refused: there would be nothing to transcribe."""
    if duration is None:
        return None
    if options.start is not None and options.start >= duration:
        raise Invalid(f"start ({options.start:g} s) is not before the end of the audio ({duration:.1f} s)")
    return options.span_seconds(duration)


def create_job(
    session: Session,
    job_id: str,
    user: User,
    upload: ReceivedUpload,
    options: JobOptions,
    seconds: float | None,
) -> Job:
    return JobRepository(session).create(
        id=job_id,
        user_id=user.id,
        filename=upload.filename,
        content_type=upload.content_type,
        size_bytes=upload.size,
        source_key=upload.key,
        # The container's figure reserves the minutes until `prepare` records the decoded length
        # (of the span the job transcribes: what it is billed for).
        audio_duration_seconds=seconds,
        **_option_columns(options),
    )


def create_url_job(
    session: Session,
    job_id: str,
    user: User,
    url: str,
    filename: str | None,
    options: JobOptions,
    reservation_id: str,
) -> Job:
    """A job whose audio the worker fetches first: its size and length are known only then."""
    admit(session, user, reservation_id, None)
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
        "options": options.transcription.to_json() or None,
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


CANCEL_RULE = "only pending or processing jobs can be canceled"
RETRY_RULE = "only failed jobs can be retried"

# Cancel and retry write the chunks before the job: the order in which a worker storing a chunk
# locks the same rows, so that the two do not deadlock. The job's write is conditional: if another
# writer changed the job since it was read, the Conflict rolls the chunks' write back with it.


def cancel_job(session: Session, job: Job) -> list[int]:
    """Cancel a pending or processing job; returns the chunks whose queued work should be dropped."""
    if not job.status.is_active:
        raise Conflict(f"the job is {job.status.value}; {CANCEL_RULE}")
    indexes = ChunkRepository(session).cancel_open(job.id)
    if not JobRepository(session).cancel(job):  # a merge finished it meanwhile
        raise _changed_meanwhile(session, job, CANCEL_RULE)
    return indexes


def retry_job(session: Session, user: User, job: Job) -> list[int] | None:
    """Put a failed job back in the pipeline. Returns the chunks to redo, or None to prepare again."""
    if job.status != JobStatus.FAILED:
        raise Conflict(f"the job is {job.status.value}; {RETRY_RULE}")
    UserRepository(session).lock(user.id)  # the failed job becomes active: the same exact check
    check_can_submit(session, user)
    planned = job.chunks_total is not None
    indexes = ChunkRepository(session).reopen_failed(job.id) if planned else None
    if not JobRepository(session).reopen(job, planned=planned):  # a concurrent retry reopened it
        raise _changed_meanwhile(session, job, RETRY_RULE)
    return indexes


def _changed_meanwhile(session: Session, job: Job, rule: str) -> Conflict | NotFound:
    status = JobRepository(session).status_of(job.id)
    if status is None:
        return NotFound(f"no job {job.id}")
    return Conflict(f"the job is {status.value}; {rule}")


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
    """Delete finished jobs older than `older_than_days`; the caller removes their files after commit."""
    return JobRepository(session).delete_older_than(older_than_days)
