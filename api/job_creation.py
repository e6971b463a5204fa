"""Audio becomes a job: checked, admitted within the account's limits, written, and queued once
committed (or taken back if the queue refuses it)."""

import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath

from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from api.filenames import safe_extension, safe_filename
from api.quota import admit
from api.submission import JobOptions, filename_from_url
from core.enums import Priority
from core.errors import BadRequest, Invalid, PayloadTooLarge, ServiceUnavailable, UnsupportedMedia
from core.logging import get_logger
from core.media import EmptyAudioError, MediaInfo, NotAudioError, probe
from core.options import TranscriptionOptions
from core.queues import QueueManager
from repositories.jobs import JobRepository
from repositories.models import Job, User
from repositories.uploads import UploadRepository
from storage.base import InvalidKey, Storage, check_key
from storage.keys import job_prefix, source_key

log = get_logger(__name__)


@dataclass(frozen=True)
class StoredAudio:
    """A job's source audio, already in storage under `key`, as the client named and typed it."""

    key: str
    filename: str
    content_type: str | None
    size: int


def new_job_id() -> str:
    return str(uuid.uuid4())


def check_audio(storage: Storage, upload: StoredAudio) -> MediaInfo:
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


def accept_stored_audio(
    session: Session,
    storage: Storage,
    job_id: str,
    user: User,
    upload: StoredAudio,
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
    upload: StoredAudio,
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
) -> StoredAudio:
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
    return StoredAudio(key=target, filename=PurePosixPath(object_key).name, content_type=None, size=size)


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
