"""Job submission and removal: the steps between a validated request and the repositories."""

import uuid

from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from api.upload import ReceivedUpload
from core.enums import Priority
from core.errors import BadRequest, ServiceUnavailable, UnsupportedMedia
from core.logging import get_logger
from core.media import EmptyAudioError, NotAudioError, probe
from core.queues import QueueManager
from repositories.jobs import JobRepository
from repositories.models import Job, User
from storage.base import Storage
from storage.keys import job_prefix

log = get_logger(__name__)


def new_job_id() -> str:
    return str(uuid.uuid4())


def check_audio(storage: Storage, upload: ReceivedUpload) -> None:
    """Reject an upload that is empty or not decodable audio."""
    if upload.size == 0:
        raise BadRequest("the file is empty")
    try:
        with storage.local_path(upload.key) as path:
            probe(path)
    except EmptyAudioError as exc:
        raise BadRequest(str(exc)) from exc
    except NotAudioError as exc:
        raise UnsupportedMedia(str(exc)) from exc


def create_job(
    session: Session,
    job_id: str,
    user: User,
    upload: ReceivedUpload,
    priority: Priority,
    language: str | None,
) -> Job:
    return JobRepository(session).create(
        id=job_id,
        user_id=user.id,
        priority=priority,
        language=language,
        filename=upload.filename,
        content_type=upload.content_type,
        size_bytes=upload.size,
        source_key=upload.key,
    )


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
