"""Cancel and retry: a job's moves out of and back into the pipeline at its owner's request."""

from sqlalchemy.orm import Session

from api.quota import check_can_submit
from core.enums import JobStatus
from core.errors import Conflict, NotFound
from repositories.chunks import ChunkRepository
from repositories.jobs import JobRepository
from repositories.models import Job, User
from repositories.users import UserRepository

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
