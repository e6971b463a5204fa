"""OpenAI's audio routes over ordinary jobs: `POST /v1/audio/transcriptions` and
`POST /v1/audio/translations` submit a job at the caller's tier, as `POST /v1/jobs` does (the same
limits, quota, history and webhooks), and answer when it ends, in OpenAI's shapes
(`api.openai_compat`).

The request waits without a database connection or a thread: the job is committed and queued
before the response begins (FastAPI ends the route's function-scoped unit of work first), and the
wait is the job's event stream, short reads in a worker thread between sleeps. A client that goes
away stops the wait and nothing else: the job runs on and stays in the caller's history.
"""

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from anyio.to_thread import run_sync
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import Receive, Scope, Send

from api import intake
from api.deps import CurrentUser, QueuesDep, SessionsDep, SettingsDep, StorageDep, UnitOfWork, UoW
from api.events import Sources, job_events, with_heartbeats
from api.openai_compat import (
    AudioRequest,
    OpenAIErrorOut,
    OpenAIRoute,
    ResponseFormat,
    check_awaitable,
    delta_frame,
    done_frame,
    error_frame,
    error_response,
    json_body,
    verbose_body,
)
from core.config import Settings
from core.enums import JobStatus, TranscriptFormat
from core.logging import get_logger
from core.options import Task
from core.queues import QueueManager
from repositories.jobs import JobRepository
from repositories.models import User
from storage.base import Storage
from storage.keys import transcript_key

log = get_logger(__name__)

router = APIRouter(prefix="/v1/audio", tags=["openai"], route_class=OpenAIRoute)

_FIELDS: dict[str, Any] = {
    "file": {"type": "string", "format": "binary"},
    "model": {"type": "string", "description": "a name `GET /v1/models` lists, or `whisper-1`"},
    "prompt": {"type": "string"},
    "response_format": {"type": "string", "enum": [f.value for f in ResponseFormat]},
    "temperature": {"type": "number", "minimum": 0, "maximum": 1},
}
_TRANSCRIPTION_FIELDS: dict[str, Any] = {
    **_FIELDS,
    "language": {"type": "string", "description": "ISO 639-1, e.g. `en`; default: detected"},
    "timestamp_granularities[]": {"type": "array", "items": {"type": "string", "enum": ["word", "segment"]}},
    "stream": {"type": "boolean"},
}


def _body(fields: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "required": ["file"], "properties": fields}
    return {"requestBody": {"content": {"multipart/form-data": {"schema": schema}}}}


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the transcript, in `response_format`; `text/event-stream` with `stream=true`",
        "content": {
            "application/json": {},
            "text/plain": {},
            TranscriptFormat.SRT.media_type.split(";")[0]: {},
            TranscriptFormat.VTT.media_type.split(";")[0]: {},
            "text/event-stream": {},
        },
    },
    **{code: {"model": OpenAIErrorOut} for code in (400, 401, 403, 404, 409, 413, 429, 500, 503)},
}
# Every answer names the job it made: it stays in the caller's history (`GET /v1/jobs/{id}`).
JOB_HEADER = "X-Job-Id"
# No proxy may cache an answer or hold a stream back to buffer it (nginx reads X-Accel-Buffering).
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class _Deps:
    """What both routes take in a job with: one dependency, so their signatures stay one line."""

    def __init__(
        self, uow: UoW, storage: StorageDep, queues: QueuesDep, settings: SettingsDep, sessions: SessionsDep
    ) -> None:
        self.uow: UnitOfWork = uow
        self.storage: Storage = storage
        self.queues: QueueManager = queues
        self.settings: Settings = settings
        self.sessions: sessionmaker[Session] = sessions


@router.post("/transcriptions", responses=_RESPONSES, openapi_extra=_body(_TRANSCRIPTION_FIELDS))
async def create_transcription(
    request: Request, user: CurrentUser, deps: Annotated[_Deps, Depends()]
) -> Response:
    """OpenAI's transcription: multipart `file`, `model`, `language`, `prompt`, `temperature`
    (0 to 1, accepted and unused: decoding is deterministic), `response_format`
    (`json|text|srt|verbose_json|vtt`), `timestamp_granularities[]` (`word` and/or `segment`, with
    `verbose_json`), `stream` (server-sent `transcript.text.delta` events as chunks complete, then
    `transcript.text.done`). Answers when the job ends; audio longer than
    `VERBATIM_SYNC_MAX_AUDIO_SECONDS` is refused (submit it with `POST /v1/jobs`). Errors are
    OpenAI's `{"error": {message, type, param, code}}`."""
    return await _submit(Task.TRANSCRIBE, request, deps, user)


@router.post("/translations", responses=_RESPONSES, openapi_extra=_body(_FIELDS))
async def create_translation(
    request: Request, user: CurrentUser, deps: Annotated[_Deps, Depends()]
) -> Response:
    """OpenAI's translation to English, on a multilingual model: multipart `file`, `model`,
    `prompt`, `temperature`, `response_format`, as for transcriptions."""
    return await _submit(Task.TRANSLATE, request, deps, user)


async def _submit(task: Task, request: Request, deps: _Deps, user: User) -> Response:
    """Take the job in (refused before commit if too long to wait for), then answer as it ends."""
    job, upload = await intake.receive_job(
        request,
        deps.uow,
        deps.storage,
        deps.queues,
        deps.settings,
        user,
        lambda received: AudioRequest.parse(received.field_values, task).job_fields(user, deps.settings),
    )
    check_awaitable(job.audio_duration_seconds, deps.settings)
    asked = AudioRequest.parse(upload.field_values, task)
    waited = _Waited(Sources(deps.sessions, deps.settings), deps.storage, job.id, asked)
    if asked.stream:
        headers = {**_STREAM_HEADERS, JOB_HEADER: job.id}
        return StreamingResponse(_frames(waited), media_type="text/event-stream", headers=headers)
    return AwaitedResponse(waited.answer, job.id)


@dataclass(frozen=True)
class _Waited:
    """A submitted job this request waits for, and what it asked for."""

    sources: Sources
    storage: Storage
    job_id: str
    asked: AudioRequest

    async def ended(self) -> None:
        async for _ in job_events(self.sources, self.job_id):
            pass

    async def answer(self) -> Response:
        await self.ended()
        outcome = await run_sync(_outcome, self.sources.sessions, self.job_id)
        return await run_sync(_response, outcome, self.asked, self.storage)


@dataclass(frozen=True)
class _Outcome:
    job_id: str
    status: JobStatus | None  # None: the job was deleted while the request waited
    error: str | None = None
    text: str = ""
    duration: float = 0.0


def _outcome(sessions: sessionmaker[Session], job_id: str) -> _Outcome:
    with sessions() as session:
        job = JobRepository(session).get(job_id)
        if job is None:
            return _Outcome(job_id, None)
        return _Outcome(
            job_id, job.status, job.error, job.transcript_text or "", job.audio_duration_seconds or 0.0
        )


def _response(outcome: _Outcome, asked: AudioRequest, storage: Storage) -> Response:
    """The ended job as OpenAI answers: the transcript in the format asked for, or the error."""
    refused = _refusal(outcome)
    if refused is not None:
        return error_response(*refused, retry=False)
    fmt = asked.response_format
    if fmt == ResponseFormat.JSON:
        return JSONResponse(json_body(outcome.text, outcome.duration, asked.task))
    if fmt == ResponseFormat.TEXT:
        return PlainTextResponse(outcome.text + "\n")
    stored = b"".join(storage.iter_bytes(transcript_key(outcome.job_id, _STORED[fmt].value)))
    if fmt == ResponseFormat.VERBOSE_JSON:
        return JSONResponse(verbose_body(json.loads(stored), asked.task, asked.granularities))
    return Response(stored, media_type=_STORED[fmt].media_type)


_STORED = {
    ResponseFormat.SRT: TranscriptFormat.SRT,
    ResponseFormat.VTT: TranscriptFormat.VTT,
    ResponseFormat.VERBOSE_JSON: TranscriptFormat.JSON,
}


def _refusal(outcome: _Outcome) -> tuple[int, str, str] | None:
    """(status, code, message) for a job that did not complete: it stays in the history, where
    `GET /v1/jobs/{id}` tells more; a retry would only make another job, so none is invited."""
    job = outcome.job_id
    if outcome.status is None:
        return 404, "job_deleted", f"the job {job} was deleted while this request waited"
    if outcome.status == JobStatus.FAILED:
        return 500, "job_failed", f"the job {job} failed: {outcome.error}"
    if outcome.status == JobStatus.CANCELED:
        return 409, "job_canceled", f"the job {job} was canceled"
    return None


async def _frames(waited: _Waited) -> AsyncIterator[bytes]:
    async for frame in with_heartbeats(_stream(waited)):
        yield frame


async def _stream(waited: _Waited) -> AsyncIterator[bytes]:
    """Each chunk's text as it is transcribed, in order (the deltas joined are the transcript's
    text), then the whole text; or an error event if the job did not complete."""
    said = False
    async for event in job_events(waited.sources, waited.job_id):
        text = (event.data.get("text") or "").strip() if event.event == "chunk" else ""
        if text:
            yield delta_frame(f" {text}" if said else text)
            said = True
    outcome = await run_sync(_outcome, waited.sources.sessions, waited.job_id)
    refused = _refusal(outcome)
    yield done_frame(outcome.text) if refused is None else error_frame(*refused)


class AwaitedResponse(Response):
    """A response known only once a job ends. Sent after the route returned, so after its unit of
    work committed and queued the job; while it waits, a client that disconnects ends the wait
    (the job goes on)."""

    def __init__(self, produce: Callable[[], Awaitable[Response]], job_id: str) -> None:
        super().__init__()
        self._produce = produce
        self._job_id = job_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer: Response | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(_cancel_on_disconnect, receive, group.cancel_scope)
            answer = await self._produce()
            group.cancel_scope.cancel()
        if answer is None:
            log.info("openai.client_gone", job_id=self._job_id)
            return
        answer.headers[JOB_HEADER] = self._job_id
        await answer(scope, receive, send)


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    """The request's body is read by now: the next message is the client leaving."""
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()
