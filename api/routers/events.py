"""`GET /v1/jobs/{id}/events`: a job's live events as server-sent events (see `api.events`)."""

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from api.deps import CurrentUser, SessionsDep, SettingsDep, UoW
from api.events import (
    RETRY_MILLISECONDS,
    Cursor,
    JobEvent,
    Sources,
    job_events,
    sse_frame,
    sse_retry,
    with_heartbeats,
)
from api.fields import Text
from api.schemas import ChunkEventData, QueueEventData, StatusEventData, error_responses
from core.errors import NotFound
from repositories.jobs import JobRepository

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_EVENTS: dict[str, type[BaseModel]] = {
    "status": StatusEventData,
    "chunk": ChunkEventData,
    "queue": QueueEventData,
}
_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "server-sent events; each event's `data` is JSON: "
        + ", ".join(f"`{name}` ({model.__name__})" for name, model in _EVENTS.items()),
        "content": {
            "text/event-stream": {
                "schema": {"type": "string"},
                "x-events": {name: model.model_json_schema() for name, model in _EVENTS.items()},
            }
        },
    }
}
# No proxy may cache the stream or hold it back to buffer it (nginx reads X-Accel-Buffering).
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
EventId = Annotated[str | None, Query(max_length=200)]


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={**_STREAM, **error_responses(401, 404, 422)},
)
def job_event_stream(
    job_id: Text,
    user: CurrentUser,
    uow: UoW,
    sessions: SessionsDep,
    settings: SettingsDep,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID", max_length=200)] = None,
    last_event_id: EventId = None,
) -> StreamingResponse:
    """Your job's progress as it happens (`text/event-stream`), until it ends:

    - `status` `{status, chunks_total, chunks_completed, error}`: first, then on every change of
      the status or of `chunks_total`; a final status (`completed`, `failed`, `canceled`) is
      the last event, after every chunk.
    - `chunk` `{index, start, end, text}`: each transcribed chunk, in index order: the texts so
      far are the transcript so far.
    - `queue` `{queue_position, eta_seconds}`: while the job waits or runs, when they change.

    Resume after a lost connection with the last event's id as the `Last-Event-ID` header (what
    an EventSource sends by itself) or `?last_event_id=`: nothing is missed or repeated. An idle
    stream carries a `: ping` comment every 15 s."""
    after = last_event_id_header or last_event_id
    Cursor.parse(after)  # a malformed id is a 422 now, not a broken stream later
    if JobRepository(uow.session).get_for_owner(job_id, user.id) is None:
        raise NotFound(f"no job {job_id}")
    events = job_events(Sources(sessions, settings), job_id, after)
    return StreamingResponse(_frames(events), media_type="text/event-stream", headers=_HEADERS)


async def _frames(events: AsyncIterator[JobEvent]) -> AsyncIterator[bytes]:
    yield sse_retry(RETRY_MILLISECONDS)
    async for frame in with_heartbeats(_encoded(events)):
        yield frame


async def _encoded(events: AsyncIterator[JobEvent]) -> AsyncIterator[bytes]:
    async for event in events:
        yield sse_frame(event.event, json.dumps(event.data, ensure_ascii=False), event.id)
