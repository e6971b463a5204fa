from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from api import services
from api.deps import CurrentUser, QueuesDep, SettingsDep, StorageDep, UnitOfWork, UoW
from api.schemas import ChunkOut, ErrorOut, JobList, JobOut, JobStats
from api.upload import ReceivedUpload, receive_upload
from core.enums import JobStatus, Priority, TranscriptFormat
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.languages import LANGUAGES
from core.tiers import resolve_priority
from repositories.chunks import ChunkRepository
from repositories.jobs import JobFilter, JobRepository
from repositories.models import Job, User
from storage.base import Storage
from storage.keys import job_prefix, source_key, transcript_key

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_errors: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 402, 403, 404, 413, 415, 422, 429, 503)
}


@router.post("", status_code=202, response_model=JobOut, responses=_errors)
async def submit_job(
    request: Request,
    response: Response,
    user: CurrentUser,
    uow: UoW,
    storage: StorageDep,
    queues: QueuesDep,
    settings: SettingsDep,
) -> JobOut:
    """Multipart form: `file` (audio or video), optional `language` (e.g. `en`; default: detect)
    and `priority` (`high|normal|low`; default and ceiling come from your tier)."""
    current = await run_in_threadpool(services.check_can_submit, uow.session, user)
    job_id = services.new_job_id()
    max_bytes = min(settings.max_upload_bytes, current.policy.max_upload_mb * 1024 * 1024)
    upload = await receive_upload(request, storage, lambda ext: source_key(job_id, ext), max_bytes)
    uow.after_rollback(lambda: storage.delete(upload.key))
    job = await run_in_threadpool(_accept, uow, storage, job_id, user, upload, current)
    uow.after_commit(lambda: services.enqueue_or_withdraw(uow.session, storage, queues, job.id, job.priority))
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobOut.of(job)


def _accept(
    uow: UnitOfWork,
    storage: Storage,
    job_id: str,
    user: User,
    upload: ReceivedUpload,
    current: services.Usage,
) -> Job:
    priority = resolve_priority(user.tier, _priority_field(upload.fields.get("priority")))
    language = _language_field(upload.fields.get("language"))
    duration = services.check_audio(storage, upload).duration_seconds
    services.check_duration(current, duration, user.tier.value)
    return services.create_job(uow.session, job_id, user, upload, priority, language, duration)


def _priority_field(raw: str | None) -> Priority | None:
    if not raw:
        return None
    try:
        return Priority(raw.lower())
    except ValueError:
        raise Invalid(f"unknown priority '{raw}': use high, normal or low") from None


def _language_field(raw: str | None) -> str | None:
    if not raw or raw.lower() == "auto":
        return None
    if raw.lower() not in LANGUAGES:
        raise Invalid(f"unknown language '{raw}': use a code such as 'en', or omit it to detect")
    return raw.lower()


class JobSort(StrEnum):
    NEWEST = "-created_at"
    OLDEST = "created_at"
    COMPLETED_LAST = "-completed_at"
    COMPLETED_FIRST = "completed_at"
    LONGEST = "-duration"
    SHORTEST = "duration"
    FILENAME = "filename"
    FILENAME_DESC = "-filename"


@router.get("", response_model=JobList, responses=_errors)
def list_jobs(
    user: CurrentUser,
    uow: UoW,
    status: JobStatus | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    language: Annotated[str | None, Query(max_length=16)] = None,
    q: Annotated[str | None, Query(max_length=200, description="text in the filename or transcript")] = None,
    sort: JobSort = JobSort.NEWEST,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobList:
    """Your jobs, filtered and sorted (`-` = descending), with the total before pagination."""
    filters = JobFilter(
        status=status,
        created_after=_aware(created_after),
        created_before=_aware(created_before),
        language=language.lower() if language else None,
        q=q,
        sort=sort.value,
    )
    items, total = JobRepository(uow.session).list_for_owner(user.id, limit, offset, filters)
    return JobList(items=[JobOut.of(j) for j in items], total=total, limit=limit, offset=offset)


def _aware(moment: datetime | None) -> datetime | None:
    # A timestamp without a zone is taken as UTC, the zone every timestamp of the API is in.
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


@router.get("/stats", response_model=JobStats, responses=_errors)
def job_stats(user: CurrentUser, uow: UoW, all: bool = False) -> JobStats:
    """Counts per status, audio minutes transcribed, average processing time and success rate:
    yours, or the whole service's with `all=true` (admins only)."""
    if all and not user.is_admin:
        raise Forbidden("`all=true` needs an admin")
    return JobStats.of(services.job_stats(uow.session, None if all else user.id))


def _own_job(uow: UnitOfWork, user: User, job_id: str) -> Job:
    job = JobRepository(uow.session).get_for_owner(job_id, user.id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


@router.get("/{job_id}", response_model=JobOut, responses=_errors)
def get_job(job_id: str, user: CurrentUser, uow: UoW) -> JobOut:
    return JobOut.of(_own_job(uow, user, job_id))


@router.get("/{job_id}/chunks", response_model=list[ChunkOut], responses=_errors)
def get_chunks(job_id: str, user: CurrentUser, uow: UoW) -> list[ChunkOut]:
    job = _own_job(uow, user, job_id)
    return [ChunkOut.of(c) for c in ChunkRepository(uow.session).list_for_job(job.id)]


@router.get(
    "/{job_id}/transcript",
    responses={
        **_errors,
        200: {"content": {f.media_type.split(";")[0]: {} for f in TranscriptFormat}},
        202: {"model": JobOut},
        409: {"model": ErrorOut},
    },
)
def get_transcript(
    job_id: str,
    user: CurrentUser,
    uow: UoW,
    storage: StorageDep,
    format: TranscriptFormat = TranscriptFormat.TXT,
) -> Response:
    """The transcript once the job is completed; `202` with progress while it is not yet."""
    job = _own_job(uow, user, job_id)
    if job.status == JobStatus.FAILED:
        raise Conflict(f"the job failed: {job.error}")
    if job.status != JobStatus.COMPLETED:
        body = JobOut.of(job).model_dump(mode="json")
        return JSONResponse(body, status_code=202, headers={"Retry-After": "5"})
    return StreamingResponse(
        storage.iter_bytes(transcript_key(job.id, format.value)),
        media_type=format.media_type,
        headers={"Content-Disposition": f'inline; filename="{job.id}.{format.value}"'},
    )


@router.post("/{job_id}/cancel", response_model=JobOut, responses={**_errors, 409: {"model": ErrorOut}})
def cancel_job(job_id: str, user: CurrentUser, uow: UoW, queues: QueuesDep) -> JobOut:
    """Stop a pending or processing job: chunks not yet transcribed are dropped."""
    job = _own_job(uow, user, job_id)
    indexes = services.cancel_job(uow.session, job)
    uow.after_commit(lambda: queues.cancel(job.id, indexes))
    return JobOut.of(job)


@router.post(
    "/{job_id}/retry",
    status_code=202,
    response_model=JobOut,
    responses={**_errors, 409: {"model": ErrorOut}, 429: {"model": ErrorOut}},
)
def retry_job(job_id: str, user: CurrentUser, uow: UoW, queues: QueuesDep) -> JobOut:
    """Run a failed job again: only its chunks that failed are transcribed again."""
    job = _own_job(uow, user, job_id)
    indexes = services.retry_job(uow.session, user, job)
    if indexes is None:
        uow.after_commit(lambda: queues.enqueue_prepare(job.id, job.priority))
    else:
        uow.after_commit(lambda: queues.enqueue_chunks(job.id, job.priority, indexes))
    return JobOut.of(job)


@router.delete("/{job_id}", status_code=204, responses=_errors)
def delete_job(job_id: str, user: CurrentUser, uow: UoW, storage: StorageDep) -> Response:
    """Delete the job, its uploaded audio, its chunks and its transcripts."""
    job = _own_job(uow, user, job_id)
    JobRepository(uow.session).delete(job)
    uow.after_commit(lambda: storage.delete_prefix(job_prefix(job_id)))
    return Response(status_code=204)
