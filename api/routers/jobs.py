from dataclasses import replace
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from api import intake, job_lifecycle
from api import job_stats as stats
from api.deps import CurrentUser, QueuesDep, SettingsDep, StorageDep, UnitOfWork, UoW
from api.fields import Moment, Offset, Text
from api.filenames import safe_filename
from api.job_creation import accept_stored_audio, claim_uploaded_object, create_url_job, new_job_id
from api.queue_estimates import estimate_for
from api.schemas import ChunkOut, ErrorOut, JobList, JobOut, JobStats
from api.submission import JobCreate, checked_url, form_fields, form_schema, parse_options
from core import captions
from core.captions import CAPTION_FORMATS, CUE_SECONDS_RANGE, LINE_CHARS_RANGE, LINES_RANGE, CaptionLimits
from core.config import Settings
from core.enums import JobStatus, TranscriptFormat
from core.errors import Conflict, Forbidden, Invalid, NotFound, PayloadTooLarge
from repositories.chunks import ChunkRepository
from repositories.jobs import JobFilter, JobRepository
from repositories.models import Job, User
from storage.base import Storage
from storage.keys import job_prefix, transcript_key

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_JSON_BYTES = 16 * 1024

_errors: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 402, 403, 404, 413, 415, 422, 429, 503)
}


_SUBMIT_BODY = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        **form_schema(),
                    },
                }
            },
            "application/json": {"schema": JobCreate.model_json_schema()},
        }
    }
}


@router.post("", status_code=202, response_model=JobOut, responses=_errors, openapi_extra=_SUBMIT_BODY)
async def submit_job(
    request: Request,
    response: Response,
    user: CurrentUser,
    uow: UoW,
    storage: StorageDep,
    queues: QueuesDep,
    settings: SettingsDep,
) -> JobOut:
    """The audio as a multipart `file`, or JSON naming an `object_key` from `POST /v1/uploads` or
    an `audio_url` to fetch. Options (form fields or JSON members, the same rules for both; the
    job shows each with its effective value): `language` (e.g. `en`; default: detect),
    `priority` (`high|normal|low`; default and ceiling from your tier), `backend`
    (`local|assemblyai`, where your tier allows), `mode` (`mono|dialogue`: label speakers),
    `webhook_url` (called when the job ends; default: yours from `PUT /v1/webhooks`), `model` (a
    name `GET /v1/models` lists; default: the service's), `task` (`transcribe`, or `translate` to
    English with a multilingual model), `prompt` and `hotwords` (names and spellings to expect),
    `timestamps` (`segment|word`), `start` and `end` (seconds: transcribe, and pay for, only that
    part of the file), and with `mode=dialogue` `speakers` (how many speak) or `min_speakers` and
    `max_speakers`. The assemblyai backend takes no `model`, `prompt`, `hotwords` or translation.
    A bad value is a `422` naming its field."""
    if _is_json(request):
        reservation = await intake.reserve(uow, user)
        body = await _json_body(request)
        max_bytes = intake.max_upload_bytes(settings, user)
        job = await run_in_threadpool(
            _accept_json, uow, storage, settings, new_job_id(), user, body, reservation, max_bytes
        )
        intake.enqueue_when_committed(uow, storage, queues, job)
    else:
        job, _ = await intake.receive_job(
            request, uow, storage, queues, settings, user, lambda upload: form_fields(upload.fields)
        )
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobOut.of(job)


def _is_json(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"


async def _json_body(request: Request) -> JobCreate:
    raw = b""
    async for data in request.stream():
        raw += data
        if len(raw) > MAX_JSON_BYTES:
            raise PayloadTooLarge("the JSON body is too large")
    try:
        return JobCreate.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None


def _accept_json(
    uow: UnitOfWork,
    storage: Storage,
    settings: Settings,
    job_id: str,
    user: User,
    body: JobCreate,
    reservation: str,
    max_bytes: int,
) -> Job:
    options = parse_options(body, user, settings)
    url = checked_url("audio_url", body.audio_url, settings)
    if url is not None:
        return create_url_job(uow.session, job_id, user, url, body.filename, options, reservation)
    assert body.object_key is not None  # JobCreate holds exactly one source, and not an empty one
    upload = claim_uploaded_object(uow.session, storage, user, body.object_key, job_id, max_bytes)
    uow.after_rollback(lambda: storage.move(upload.key, body.object_key or ""))
    if body.filename:
        upload = replace(upload, filename=safe_filename(body.filename))
    return accept_stored_audio(uow.session, storage, job_id, user, upload, options, reservation)


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
    created_after: Moment | None = None,
    created_before: Moment | None = None,
    language: Annotated[Text | None, Query(max_length=16)] = None,
    q: Annotated[Text | None, Query(max_length=200, description="text in the filename or transcript")] = None,
    sort: JobSort = JobSort.NEWEST,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Offset = 0,
    exact_total: Annotated[
        bool, Query(description="count every match, however many (slower on a long history)")
    ] = False,
) -> JobList:
    """Your jobs, filtered and sorted (`-` = descending), with the total before pagination: exact
    while fewer than 1,000 jobs follow `offset`, else a lower bound (`total_exact: false`)."""
    filters = JobFilter(
        status=status,
        created_after=created_after,
        created_before=created_before,
        language=language.lower() if language else None,
        q=q,
        sort=sort.value,
    )
    page = JobRepository(uow.session).list_for_owner(user.id, limit, offset, filters, exact_total=exact_total)
    return JobList(
        items=[JobOut.of(j) for j in page.items],
        total=page.total,
        total_exact=page.exact,
        limit=limit,
        offset=offset,
    )


@router.get("/stats", response_model=JobStats, responses=_errors)
def job_stats(user: CurrentUser, uow: UoW, all: bool = False) -> JobStats:
    """Counts per status, audio minutes transcribed, average processing time and success rate:
    yours, or the whole service's with `all=true` (admins only)."""
    if all and not user.is_admin:
        raise Forbidden("`all=true` needs an admin")
    return JobStats.of(stats.job_stats(uow.session, None if all else user.id))


def _own_job(uow: UnitOfWork, user: User, job_id: str) -> Job:
    job = JobRepository(uow.session).get_for_owner(job_id, user.id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


@router.get("/{job_id}", response_model=JobOut, responses=_errors)
def get_job(job_id: Text, user: CurrentUser, uow: UoW, settings: SettingsDep) -> JobOut:
    """The job; while it is pending or processing, with its `queue_position` and `eta_seconds`."""
    job = _own_job(uow, user, job_id)
    return JobOut.of(job, estimate_for(uow.session, job.id, settings) if job.status.is_active else None)


@router.get("/{job_id}/chunks", response_model=list[ChunkOut], responses=_errors)
def get_chunks(job_id: Text, user: CurrentUser, uow: UoW) -> list[ChunkOut]:
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
    job_id: Text,
    user: CurrentUser,
    uow: UoW,
    storage: StorageDep,
    format: TranscriptFormat = TranscriptFormat.TXT,
    max_line_chars: Annotated[
        int | None,
        Query(
            ge=LINE_CHARS_RANGE[0],
            le=LINE_CHARS_RANGE[1],
            description="srt/vtt: the longest line; default 42",
        ),
    ] = None,
    max_lines: Annotated[
        int | None,
        Query(ge=LINES_RANGE[0], le=LINES_RANGE[1], description="srt/vtt: the most lines a cue; default 2"),
    ] = None,
    max_cue_seconds: Annotated[
        float | None,
        Query(
            ge=CUE_SECONDS_RANGE[0],
            le=CUE_SECONDS_RANGE[1],
            description="srt/vtt: the longest a cue shows; default 7",
        ),
    ] = None,
) -> Response:
    """The transcript once the job is completed; `202` with progress while it is not yet.

    srt and vtt captions break lines and cues only between words, never mixing two speakers in a
    cue; `max_line_chars`, `max_lines` and `max_cue_seconds` shape them (a word longer than a line
    stands alone on its line). They shape captions only: with `format=txt|json` they are a `422`."""
    limits = _caption_limits(format, max_line_chars, max_lines, max_cue_seconds)
    job = _own_job(uow, user, job_id)
    if job.status == JobStatus.FAILED:
        raise Conflict(f"the job failed: {job.error}")
    if job.status != JobStatus.COMPLETED:
        body = JobOut.of(job).model_dump(mode="json")
        return JSONResponse(body, status_code=202, headers={"Retry-After": "5"})
    headers = {"Content-Disposition": f'inline; filename="{job.id}.{format.value}"'}
    if limits is not None:
        stored = b"".join(storage.iter_bytes(transcript_key(job.id, TranscriptFormat.JSON.value)))
        text = captions.render_stored(stored, format, limits)
        return Response(text, media_type=format.media_type, headers=headers)
    return StreamingResponse(
        storage.iter_bytes(transcript_key(job.id, format.value)),
        media_type=format.media_type,
        headers=headers,
    )


def _caption_limits(
    fmt: TranscriptFormat, max_line_chars: int | None, max_lines: int | None, max_cue_seconds: float | None
) -> CaptionLimits | None:
    """The caption shape asked for; None when none was (the stored file, shaped by the defaults)."""
    given: dict[str, Any] = {
        "max_line_chars": max_line_chars,
        "max_lines": max_lines,
        "max_cue_seconds": max_cue_seconds,
    }
    asked = {name: value for name, value in given.items() if value is not None}
    if not asked:
        return None
    if fmt not in CAPTION_FORMATS:
        raise Invalid(f"{', '.join(asked)}: only shapes captions (format=srt or vtt), not format={fmt.value}")
    return replace(CaptionLimits(), **asked)


@router.post("/{job_id}/cancel", response_model=JobOut, responses={**_errors, 409: {"model": ErrorOut}})
def cancel_job(job_id: Text, user: CurrentUser, uow: UoW, queues: QueuesDep) -> JobOut:
    """Stop a pending or processing job: chunks not yet transcribed are dropped."""
    job = _own_job(uow, user, job_id)
    indexes = job_lifecycle.cancel_job(uow.session, job)
    uow.after_commit(lambda: queues.cancel(job.id, indexes))
    return JobOut.of(job)


@router.post(
    "/{job_id}/retry",
    status_code=202,
    response_model=JobOut,
    responses={**_errors, 409: {"model": ErrorOut}, 429: {"model": ErrorOut}},
)
def retry_job(job_id: Text, user: CurrentUser, uow: UoW, queues: QueuesDep) -> JobOut:
    """Run a failed job again: only its chunks that failed are transcribed again."""
    job = _own_job(uow, user, job_id)
    indexes = job_lifecycle.retry_job(uow.session, user, job)
    if indexes is None:
        uow.after_commit(lambda: queues.enqueue_prepare(job.id, job.priority))
    else:
        uow.after_commit(lambda: queues.enqueue_chunks(job.id, job.priority, indexes))
    return JobOut.of(job)


@router.delete("/{job_id}", status_code=204, responses=_errors)
def delete_job(job_id: Text, user: CurrentUser, uow: UoW, storage: StorageDep) -> Response:
    """Delete the job, its uploaded audio, its chunks and its transcripts."""
    job = _own_job(uow, user, job_id)
    JobRepository(uow.session).delete(job)
    uow.after_commit(lambda: storage.delete_prefix(job_prefix(job_id)))
    return Response(status_code=204)
