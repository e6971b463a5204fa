"""Taking a job in over HTTP, one way for every route that accepts audio (`POST /v1/jobs`, the
OpenAI-compatible `POST /v1/audio/...`): the same limits, tier, history and queue for all.

A submission first takes one of the caller's active-job slots (a reservation, committed at once so
that no database connection waits on a slow body), then streams the audio into storage, becomes a
job if the audio and its options pass, and is queued once the request's transaction commits.
"""

from collections.abc import Callable

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from api import job_creation, quota
from api.deps import UnitOfWork
from api.job_creation import StoredAudio
from api.submission import JobFields, parse_options
from api.upload import ReceivedUpload, receive_upload
from core.config import Settings
from core.queues import QueueManager
from core.tiers import policy_for
from repositories.models import Job, User
from storage.base import Storage
from storage.keys import source_key

# How a route reads a job's options from the form's fields besides `file` (422 naming a bad one).
FieldsOf = Callable[[ReceivedUpload], JobFields]


async def reserve(uow: UnitOfWork, user: User) -> str:
    """One of the caller's active-job slots for a submission whose body is still to come (or 429,
    402 now, before a byte is read). Returns the reservation's id."""
    reservation = await run_in_threadpool(quota.reserve_submission, uow.session, user)
    # No database connection is held while the body streams in, however slowly it comes.
    await run_in_threadpool(uow.commit_early, lambda session: quota.release_reservation(session, reservation))
    return reservation


def max_upload_bytes(settings: Settings, user: User) -> int:
    return min(settings.max_upload_bytes, policy_for(user.tier).max_upload_mb * 1024 * 1024)


async def receive_job(
    request: Request,
    uow: UnitOfWork,
    storage: Storage,
    queues: QueueManager,
    settings: Settings,
    user: User,
    fields_of: FieldsOf,
) -> tuple[Job, ReceivedUpload]:
    """A multipart upload as a job of `user`'s: its `file` streamed into storage, its options read
    by `fields_of`, queued once the request's transaction commits. A route may still refuse the
    job before then (raise): the rollback removes it, its file and its reservation."""
    reservation = await reserve(uow, user)
    job_id = job_creation.new_job_id()
    max_bytes = max_upload_bytes(settings, user)
    upload = await receive_upload(request, storage, lambda ext: source_key(job_id, ext), max_bytes)
    uow.after_rollback(lambda: storage.delete(upload.key))
    job = await run_in_threadpool(
        _accept, uow, storage, settings, job_id, user, upload, reservation, fields_of
    )
    enqueue_when_committed(uow, storage, queues, job)
    return job, upload


def _accept(
    uow: UnitOfWork,
    storage: Storage,
    settings: Settings,
    job_id: str,
    user: User,
    upload: ReceivedUpload,
    reservation: str,
    fields_of: FieldsOf,
) -> Job:
    options = parse_options(fields_of(upload), user, settings)
    audio = StoredAudio(upload.key, upload.filename, upload.content_type, upload.size)
    return job_creation.accept_stored_audio(uow.session, storage, job_id, user, audio, options, reservation)


def enqueue_when_committed(uow: UnitOfWork, storage: Storage, queues: QueueManager, job: Job) -> None:
    uow.after_commit(
        lambda: job_creation.enqueue_or_withdraw(uow.session, storage, queues, job.id, job.priority)
    )
