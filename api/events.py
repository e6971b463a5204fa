"""A job's live events (`GET /v1/jobs/{id}/events`), read from the shared database.

The stream is a function of SQL alone, so any API process serves it and any process resumes it:
an event's id encodes how far the stream had got (chunks sent, status events sent, queue events
sent, and the last status and chunk count sent), never a position in some process's memory.
Nothing is held while a stream waits: each poll is a short session run in a worker thread, then
the connection goes back to the pool before the next `poll_seconds` sleep.

Events, in the order a stream sends them:

- `status` `{"status", "chunks_total", "chunks_completed", "error"}`: the first event (the current
  status), then again whenever the status or `chunks_total` (known once the chunk plan is
  complete) changes. A final status (`completed`, `failed`, `canceled`) is always the last event,
  after every chunk event before it: a job already finished when the stream opens sends its chunks
  first, then that status.
- `chunk` `{"index", "start", "end", "text"}`: each transcribed chunk, strictly in index order
  (chunk k only once chunks 0..k-1 are transcribed, however the workers finished them), so the
  texts joined with spaces are the transcript so far. A chunk that failed holds back those after
  it until a retry transcribes it.
- `queue` `{"queue_position", "eta_seconds"}`: while the job is pending or processing, when either
  changes, at most every `QUEUE_EVENT_SECONDS` (see `api.queue_estimates` for what they mean).

The stream ends after the final status. `after` (a `Last-Event-ID`) resumes a stream just after
that event, missing no chunk or status and repeating none; the queue events of a resumed stream
start from the job's standing at that moment.
"""

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

import anyio
from anyio.to_thread import run_sync
from sqlalchemy.orm import Session, sessionmaker

from api.queue_estimates import Estimate, estimate_for
from api.schemas import ChunkEventData, QueueEventData, StatusEventData
from core.config import Settings
from core.enums import JobStatus
from core.errors import Invalid
from repositories.events import EventsRepository, JobSnapshot

# Queue events are computed (one SQL query over the active jobs) at most this often per stream.
QUEUE_EVENT_SECONDS = 3.0
# An ETA that moved less than this fraction (and less than `ETA_STEP_SECONDS`) is not news.
ETA_STEP_FRACTION = 0.1
ETA_STEP_SECONDS = 5.0
# A comment line sent while nothing else is, so proxies and clients keep an idle stream open.
HEARTBEAT_SECONDS = 15.0
# The `retry:` hint: how long a disconnected EventSource waits before reconnecting (ms).
RETRY_MILLISECONDS = 3000


@dataclass(frozen=True)
class JobEvent:
    """One server-sent event. `id` is opaque and resumable (give it back as `Last-Event-ID`);
    ids strictly increase in the stream's order (their leading number is the event's position)."""

    id: str
    event: str  # "status" | "chunk" | "queue"
    data: dict[str, Any]


class EventSources(Protocol):
    """What the stream reads: `app.state` has these (the API's lifespan sets them)."""

    @property
    def sessions(self) -> sessionmaker[Session]: ...

    @property
    def settings(self) -> Settings: ...


@dataclass(frozen=True)
class Sources:
    """`EventSources` from the request's dependencies (`api.deps.SessionsDep`, `SettingsDep`)."""

    sessions: sessionmaker[Session]
    settings: Settings


@dataclass(frozen=True)
class Cursor:
    """How far a stream has got; an event's id is the cursor just after it."""

    chunks: int = 0  # chunk events sent: chunks 0..chunks-1
    statuses: int = 0  # status events sent
    queues: int = 0  # queue events sent
    status: JobStatus | None = None  # the last status sent
    total: int | None = None  # the `chunks_total` the last status event carried

    @property
    def id(self) -> str:
        seq = self.chunks + self.statuses + self.queues
        total = "" if self.total is None else str(self.total)
        return f"{seq}.{self.chunks}.{self.queues}.{self.status or ''}.{total}"

    @classmethod
    def parse(cls, event_id: str | None) -> "Cursor":
        """The cursor an id names; a stream from the start for None or an empty id."""
        if not event_id:
            return cls()
        try:
            return cls._parse(event_id)
        except ValueError:
            raise Invalid(f"Last-Event-ID: {event_id[:60]!r} is not an event id of this stream") from None

    @classmethod
    def _parse(cls, event_id: str) -> "Cursor":
        seq, chunks, queues, status, total = event_id.split(".")
        cursor = cls(
            chunks=_count(chunks),
            statuses=_count(seq) - _count(chunks) - _count(queues),
            queues=_count(queues),
            status=JobStatus(status) if status else None,
            total=_count(total) if total else None,
        )
        if cursor.statuses < 0 or (cursor.status is None) != (cursor.statuses == 0):
            raise ValueError(event_id)
        return cursor


def _count(text: str) -> int:
    if not text.isdigit() or len(text) > 9:
        raise ValueError(text)
    return int(text)


async def job_events(
    state: EventSources, job_id: str, after: str | None = None, *, poll_seconds: float = 0.5
) -> AsyncIterator[JobEvent]:
    """The job's events from just after `after` (a `Last-Event-ID`; None: from the start) until
    its final status. A malformed `after` raises `Invalid` before the first event. The caller
    checks that the job exists and is the caller's; a job deleted meanwhile ends the stream."""
    cursor = Cursor.parse(after)
    queue = _QueueWatch(state)
    while True:
        snapshot = await run_sync(_read, state.sessions, job_id, cursor.chunks)
        if snapshot is None:
            return
        events, cursor = _changes(cursor, snapshot)
        if snapshot.status.is_active:
            found = await queue.news(job_id, cursor)
            if found is not None:
                events, cursor = [*events, found[0]], found[1]
        for event in events:
            yield event
        if snapshot.status.is_final and snapshot.caught_up and cursor.status == snapshot.status:
            return
        await anyio.sleep(poll_seconds)


def _read(sessions: sessionmaker[Session], job_id: str, first_chunk: int) -> JobSnapshot | None:
    with sessions() as session:
        return EventsRepository(session).snapshot(job_id, first_chunk)


def _changes(cursor: Cursor, snapshot: JobSnapshot) -> tuple[list[JobEvent], Cursor]:
    """The chunk and status events that take the stream from `cursor` to `snapshot`: a status that
    is not final before the chunks (they belong to it), a final one after them (it ends the stream)."""
    events: list[JobEvent] = []
    changed = (cursor.status, cursor.total) != (snapshot.status, snapshot.chunks_total)
    if changed and not snapshot.status.is_final:
        cursor = _append(events, _status_event(cursor, snapshot))
    for chunk in snapshot.chunks:
        cursor = replace(cursor, chunks=cursor.chunks + 1)
        data = ChunkEventData(index=chunk.index, start=chunk.start, end=chunk.end, text=chunk.text)
        events.append(JobEvent(cursor.id, "chunk", data.model_dump(mode="json")))
    if changed and snapshot.status.is_final and snapshot.caught_up:
        cursor = _append(events, _status_event(cursor, snapshot))
    return events, cursor


def _status_event(cursor: Cursor, snapshot: JobSnapshot) -> tuple[JobEvent, Cursor]:
    cursor = replace(
        cursor, statuses=cursor.statuses + 1, status=snapshot.status, total=snapshot.chunks_total
    )
    data = StatusEventData(
        status=snapshot.status,
        chunks_total=snapshot.chunks_total,
        chunks_completed=snapshot.chunks_completed,
        error=snapshot.error,
    )
    return JobEvent(cursor.id, "status", data.model_dump(mode="json")), cursor


def _append(events: list[JobEvent], made: tuple[JobEvent, Cursor]) -> Cursor:
    events.append(made[0])
    return made[1]


class _QueueWatch:
    """A stream's queue events: the job's standing, worked out at most every `QUEUE_EVENT_SECONDS`,
    sent when it is news (the position moved, or the ETA by a tenth and at least 5 s)."""

    def __init__(self, state: EventSources) -> None:
        self._state = state
        self._sent: Estimate | None = None
        self._checked = -math.inf

    async def news(self, job_id: str, cursor: Cursor) -> tuple[JobEvent, Cursor] | None:
        if time.monotonic() - self._checked < QUEUE_EVENT_SECONDS:
            return None
        self._checked = time.monotonic()
        estimate = await run_sync(_estimate, self._state, job_id)
        if estimate is None or not _is_news(self._sent, estimate):
            return None
        self._sent = estimate
        cursor = replace(cursor, queues=cursor.queues + 1)
        data = QueueEventData(queue_position=estimate.position, eta_seconds=estimate.eta_seconds)
        return JobEvent(cursor.id, "queue", data.model_dump(mode="json")), cursor


def _estimate(state: EventSources, job_id: str) -> Estimate | None:
    with state.sessions() as session:
        return estimate_for(session, job_id, state.settings)


def _is_news(sent: Estimate | None, now: Estimate) -> bool:
    if sent is None or sent.position != now.position:
        return True
    moved = abs(now.eta_seconds - sent.eta_seconds)
    return moved >= ETA_STEP_SECONDS and moved >= ETA_STEP_FRACTION * sent.eta_seconds


# --- the wire format -----------------------------------------------------------------------------


def sse_frame(event: str | None, data: str, id: str | None = None) -> bytes:
    """One server-sent event: `event:`, `id:` and one `data:` line per line of `data` (the
    format's rule for multi-line data; a client joins them back with newlines)."""
    lines = [] if event is None else [f"event: {event}"]
    if id is not None:
        lines.append(f"id: {id}")
    lines.extend(f"data: {line}" for line in data.splitlines() or [""])
    return ("\n".join(lines) + "\n\n").encode()


def sse_comment(text: str) -> bytes:
    """A comment line: clients ignore it; it keeps an idle connection open."""
    return f": {text}\n\n".encode()


def sse_retry(milliseconds: int) -> bytes:
    """How long a client that lost the stream should wait before reconnecting."""
    return f"retry: {milliseconds}\n\n".encode()


async def with_heartbeats(
    frames: AsyncIterator[bytes], every: float = HEARTBEAT_SECONDS
) -> AsyncIterator[bytes]:
    """`frames`, plus a `: ping` comment whenever none came for `every` seconds. The wait for the
    next frame is never cut short (that would abandon a poll half done): a heartbeat is sent
    while it goes on, and the same wait is taken up again."""
    pending: asyncio.Future[bytes] | None = None
    try:
        while True:
            pending = pending or asyncio.ensure_future(anext(frames))
            done, _ = await asyncio.wait({pending}, timeout=every)
            if not done:
                yield sse_comment("ping")
                continue
            try:
                frame = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield frame
    finally:
        if pending is not None:
            pending.cancel()
