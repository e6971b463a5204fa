"""A job's live events and queue standing, driven by rows the test writes (no model, no worker).

The stream reads only SQL, so the test plays the worker's part: it plans chunks, completes them
out of order, and finishes the job, while a real stream polls."""

import json
import math
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import anyio
import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.events import Cursor, JobEvent, Sources, job_events, sse_frame, with_heartbeats
from api.queue_estimates import DEFAULT_PACE, busy_seconds
from core.config import Settings
from core.db import session_scope
from core.enums import JobStatus, Priority, Tier
from repositories.chunks import ChunkRepository
from repositories.jobs import JobRepository
from repositories.models import utcnow
from tests.conftest import auth, create_job_row, create_user

POLL = 0.01
TEXTS = ["zero one.", "two three.", "four five.", "six seven."]


# --- rows, as the pipeline writes them ----------------------------------------------------------


def add_job(
    sessions: sessionmaker[Session],
    user_id: str,
    *,
    priority: Priority = Priority.NORMAL,
    duration: float | None = 120.0,
    created_ago: float = 0.0,
    **values: Any,
) -> str:
    return create_job_row(
        sessions,
        user_id,
        priority=priority,
        audio_duration_seconds=duration,
        created_at=utcnow() - timedelta(seconds=created_ago),
        **values,
    )


def plan(sessions: sessionmaker[Session], job_id: str, count: int, seconds: float = 30.0) -> None:
    """`prepare` cutting `count` chunks of `seconds` (the job turns processing at the first)."""
    with session_scope(sessions) as session:
        JobRepository(session).start_processing(job_id)
        ChunkRepository(session).add_plan(
            job_id,
            [
                {
                    "chunk_index": i,
                    "start_seconds": i * seconds,
                    "end_seconds": (i + 1) * seconds,
                    "audio_key": f"jobs/{job_id}/chunks/{i}.wav",
                }
                for i in range(count)
            ],
        )


def claim_plan(sessions: sessionmaker[Session], job_id: str, count: int) -> None:
    with session_scope(sessions) as session:
        JobRepository(session).claim_plan(job_id, duration=count * 30.0, chunks_total=count)


def complete_chunk(sessions: sessionmaker[Session], job_id: str, index: int) -> None:
    with session_scope(sessions) as session:
        ChunkRepository(session).complete_once(
            job_id, index, text=TEXTS[index], segments=[], language="en", seconds=1.0
        )
        JobRepository(session).increment_completed(job_id)


def transcribed_job(sessions: sessionmaker[Session], user_id: str, order: tuple[int, ...], **job: Any) -> str:
    """A completed job whose chunks (as many as `order` names) were transcribed in that order."""
    job_id = add_job(sessions, user_id, **job)
    plan(sessions, job_id, len(order))
    claim_plan(sessions, job_id, len(order))
    for index in order:
        complete_chunk(sessions, job_id, index)
    finish(sessions, job_id)
    return job_id


def finish(sessions: sessionmaker[Session], job_id: str, status: JobStatus = JobStatus.COMPLETED) -> None:
    with session_scope(sessions) as session:
        job = JobRepository(session).get(job_id)
        assert job is not None
        if status == JobStatus.COMPLETED:
            assert JobRepository(session).complete(job, text=" ".join(TEXTS), detected_language="en")
        elif status == JobStatus.FAILED:
            assert JobRepository(session).fail(job, "chunk 2: the audio is unreadable")
        else:
            ChunkRepository(session).cancel_open(job_id)
            assert JobRepository(session).cancel(job)


# --- streams -------------------------------------------------------------------------------------


class CountingSessions:
    """The session factory, counting the stream's reads: a test waits for the stream to have
    looked at the rows again, instead of sleeping."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions, self.opened = sessions, 0

    def __call__(self) -> Session:
        self.opened += 1
        return self._sessions()


async def wait_for(check: Callable[[], object], what: str) -> None:
    """Until `check()` holds (10 s at most): the stream's task changes what it looks at."""
    with anyio.fail_after(10):
        while not check():  # noqa: ASYNC110 (nothing signals: the stream only appends events)
            await anyio.sleep(POLL)
    assert check(), what


def collect(settings: Settings, sessions: Any, job_id: str, after: str | None = None) -> list[JobEvent]:
    """The whole stream of a job that is already finished (it ends by itself)."""

    async def run() -> list[JobEvent]:
        with anyio.fail_after(10):
            return [
                e async for e in job_events(Sources(sessions, settings), job_id, after, poll_seconds=POLL)
            ]

    return anyio.run(run)


def without_queue(events: list[JobEvent]) -> list[tuple[str, dict[str, Any]]]:
    return [(e.event, e.data) for e in events if e.event != "queue"]


def status(name: str, total: int | None, done: int, error: str | None = None) -> tuple[str, dict[str, Any]]:
    return ("status", {"status": name, "chunks_total": total, "chunks_completed": done, "error": error})


def chunk(index: int) -> tuple[str, dict[str, Any]]:
    data = {"index": index, "start": index * 30.0, "end": (index + 1) * 30.0, "text": TEXTS[index]}
    return ("chunk", data)


def position(event: JobEvent) -> int:
    return int(event.id.split(".")[0])


# --- the stream ----------------------------------------------------------------------------------


def test_chunks_stream_in_index_order_however_they_complete_and_the_final_status_ends_it(settings, sessions):
    user_id, _ = create_user(sessions, Tier.PRO)
    job_id = add_job(sessions, user_id)
    counting = CountingSessions(sessions)
    seen: list[JobEvent] = []

    async def looked_again() -> None:
        # Two more reads: the stream has certainly polled the rows as they are now.
        start = counting.opened
        await wait_for(lambda: counting.opened >= start + 2, "the stream to poll")

    async def stream() -> None:
        async for event in job_events(Sources(counting, settings), job_id, poll_seconds=POLL):  # type: ignore[arg-type]
            seen.append(event)

    async def drive() -> None:
        await wait_for(lambda: any(e.event == "queue" for e in seen), "the first queue event")
        plan(sessions, job_id, 4)
        await wait_for(lambda: len(without_queue(seen)) == 2, "status processing")
        complete_chunk(sessions, job_id, 2)
        complete_chunk(sessions, job_id, 1)
        await looked_again()
        assert without_queue(seen)[-1] == status("processing", None, 0), "a chunk came before chunk 0"
        complete_chunk(sessions, job_id, 0)
        await wait_for(lambda: len(without_queue(seen)) == 5, "chunks 0, 1 and 2")
        claim_plan(sessions, job_id, 4)
        await wait_for(lambda: len(without_queue(seen)) == 6, "the status with chunks_total")
        complete_chunk(sessions, job_id, 3)
        finish(sessions, job_id)

    async def main() -> None:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                group.start_soon(stream)
                group.start_soon(drive)

    anyio.run(main)

    assert without_queue(seen) == [
        status("pending", None, 0),
        status("processing", None, 0),
        chunk(0),
        chunk(1),
        chunk(2),
        status("processing", 4, 3),
        chunk(3),
        status("completed", 4, 4),
    ]
    assert seen[-1].event == "status"  # the stream ended with the final status
    queue = next(e for e in seen if e.event == "queue")
    assert queue.data == {"queue_position": 0, "eta_seconds": round(120 / DEFAULT_PACE, 1)}
    assert [position(e) for e in seen] == list(range(1, len(seen) + 1))
    assert len({e.id for e in seen}) == len(seen)

    # Resuming after any event, once the job is done: exactly the chunks after it, then the job's
    # status now (the statuses it went through meanwhile are history, not news).
    final = without_queue(seen)[-1]
    for i, event in enumerate(seen):
        resumed = collect(settings, sessions, job_id, after=event.id)
        chunks_after = [e for e in without_queue(seen[i + 1 :]) if e[0] == "chunk"]
        expected = chunks_after + ([final] if i < len(seen) - 1 else [])
        assert without_queue(resumed) == expected, f"resumed after event {i}"
        assert all(position(e) > position(event) for e in resumed)


def test_a_stream_resumed_mid_job_misses_nothing_and_repeats_nothing(settings, sessions):
    user_id, _ = create_user(sessions, Tier.PRO)
    job_id = add_job(sessions, user_id)
    plan(sessions, job_id, 4)
    complete_chunk(sessions, job_id, 0)
    seen: list[JobEvent] = []

    async def first_connection() -> None:
        events = job_events(Sources(sessions, settings), job_id, poll_seconds=POLL)
        async for event in events:
            seen.append(event)
            if event.event == "chunk":
                break  # the client goes away after chunk 0
        await events.aclose()  # type: ignore[attr-defined]

    anyio.run(first_connection)
    complete_chunk(sessions, job_id, 1)
    claim_plan(sessions, job_id, 4)
    for index in (3, 2):
        complete_chunk(sessions, job_id, index)
    finish(sessions, job_id)

    resumed = collect(settings, sessions, job_id, after=seen[-1].id)

    assert without_queue(seen + resumed) == [
        status("processing", None, 1),
        chunk(0),
        chunk(1),
        chunk(2),
        chunk(3),
        status("completed", 4, 4),
    ]


def test_a_job_already_done_sends_its_chunks_then_its_final_status(settings, sessions):
    user_id, _ = create_user(sessions, Tier.PRO)
    job_id = transcribed_job(sessions, user_id, (1, 0))

    assert without_queue(collect(settings, sessions, job_id)) == [
        chunk(0),
        chunk(1),
        status("completed", 2, 2),
    ]


@pytest.mark.parametrize("end", [JobStatus.FAILED, JobStatus.CANCELED])
def test_a_job_that_ends_unfinished_sends_the_chunks_before_the_first_gap(settings, sessions, end):
    user_id, _ = create_user(sessions, Tier.PRO)
    job_id = add_job(sessions, user_id)
    plan(sessions, job_id, 4)
    claim_plan(sessions, job_id, 4)
    for index in (0, 1, 3):
        complete_chunk(sessions, job_id, index)
    finish(sessions, job_id, end)

    events = without_queue(collect(settings, sessions, job_id))

    error = "chunk 2: the audio is unreadable" if end == JobStatus.FAILED else None
    assert events == [chunk(0), chunk(1), status(end.value, 4, 3, error)]


def test_a_stream_far_behind_catches_up_over_several_polls_before_the_final_status(
    settings, sessions, monkeypatch
):
    monkeypatch.setattr("repositories.events.CHUNKS_PER_POLL", 1)
    user_id, _ = create_user(sessions, Tier.PRO)
    job_id = add_job(sessions, user_id)
    plan(sessions, job_id, 4)
    claim_plan(sessions, job_id, 4)
    for index in range(4):
        complete_chunk(sessions, job_id, index)
    finish(sessions, job_id)

    events = without_queue(collect(settings, sessions, job_id))

    assert events == [chunk(0), chunk(1), chunk(2), chunk(3), status("completed", 4, 4)]


def test_a_job_deleted_while_watched_ends_its_stream(settings, sessions):
    user_id, _ = create_user(sessions, Tier.PRO)
    job_id = add_job(sessions, user_id)
    with session_scope(sessions) as session:
        JobRepository(session).delete(JobRepository(session).get(job_id))

    assert collect(settings, sessions, job_id) == []


@pytest.mark.parametrize("bad", ["x", "1.0.0.done.", "5.1.1..", "1.0.0..", "-1.0.0.pending."])
def test_a_malformed_event_id_is_refused(bad):
    with pytest.raises(Exception, match="not an event id") as raised:
        Cursor.parse(bad)
    assert getattr(raised.value, "status_code", None) == 422


def test_heartbeats_fill_the_silences_and_never_cut_into_a_frame():
    async def slow() -> Any:
        yield b"first"
        await anyio.sleep(0.35)
        yield b"second"

    async def run() -> list[bytes]:
        return [frame async for frame in with_heartbeats(slow(), every=0.1)]

    frames = anyio.run(run)

    assert frames[0] == b"first" and frames[-1] == b"second"
    assert 2 <= frames.count(b": ping\n\n") == len(frames) - 2


def test_a_client_that_leaves_mid_wait_stops_the_polling_behind_it():
    polling = anyio.Event()
    stopped = anyio.Event()

    async def endless() -> Any:
        try:
            polling.set()
            await anyio.sleep_forever()
            yield b"never"
        finally:
            stopped.set()

    sent: list[bytes] = []

    async def run() -> None:
        async with anyio.create_task_group() as group:

            async def response() -> None:
                async for frame in with_heartbeats(endless(), every=0.05):
                    sent.append(frame)

            group.start_soon(response)
            await polling.wait()
            await wait_for(lambda: len(sent) >= 2, "heartbeats while the job is idle")
            group.cancel_scope.cancel()  # the server cancels the response when the client goes
        with anyio.fail_after(2):
            await stopped.wait()

    anyio.run(run)


def test_an_sse_frame_carries_each_line_of_its_data_on_a_data_line():
    assert sse_frame("chunk", '{"a": 1}', "3.1.0.processing.") == (
        b'event: chunk\nid: 3.1.0.processing.\ndata: {"a": 1}\n\n'
    )
    assert sse_frame(None, "one\ntwo") == b"data: one\ndata: two\n\n"


# --- the route -----------------------------------------------------------------------------------


def parse_stream(body: str) -> list[dict[str, Any]]:
    """Server-sent events as a client reads them: id, event name and JSON data."""
    events = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "data" in fields:
            events.append({"id": fields["id"], "event": fields["event"], "data": json.loads(fields["data"])})
    return events


def test_the_route_streams_the_owners_job_and_resumes_from_last_event_id(client, sessions):
    user_id, key = create_user(sessions, Tier.PRO)
    job_id = transcribed_job(sessions, user_id, (0, 1))

    response = client.get(f"/v1/jobs/{job_id}/events", headers=auth(key))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.text.startswith("retry: ")
    events = parse_stream(response.text)
    assert [(e["event"], e["data"]) for e in events] == [chunk(0), chunk(1), status("completed", 2, 2)]
    after_first = {**auth(key), "Last-Event-ID": events[0]["id"]}
    resumed = parse_stream(client.get(f"/v1/jobs/{job_id}/events", headers=after_first).text)
    assert resumed == events[1:]
    by_query = client.get(f"/v1/jobs/{job_id}/events?last_event_id={events[1]['id']}", headers=auth(key))
    assert parse_stream(by_query.text) == events[2:]


def test_the_route_answers_404_for_another_users_job_and_422_for_a_bad_id(client, sessions):
    owner_id, owner_key = create_user(sessions, Tier.PRO)
    _, stranger_key = create_user(sessions, Tier.PRO)
    job_id = add_job(sessions, owner_id)
    finish(sessions, job_id, JobStatus.CANCELED)

    assert client.get(f"/v1/jobs/{job_id}/events", headers=auth(stranger_key)).status_code == 404
    assert client.get(f"/v1/jobs/{uuid.uuid4()}/events", headers=auth(owner_key)).status_code == 404
    assert client.get(f"/v1/jobs/{job_id}/events").status_code == 401
    bad = client.get(f"/v1/jobs/{job_id}/events", headers={**auth(owner_key), "Last-Event-ID": "nope"})
    assert bad.status_code == 422
    assert bad.json()["error"] == "validation_error"


# --- queue position and ETA ----------------------------------------------------------------------


def test_get_job_shows_the_chunks_ahead_and_an_eta_while_the_job_waits(client, sessions, settings):
    user_id, key = create_user(sessions, Tier.ENTERPRISE)
    lanes = settings.chunk_lanes
    # Ahead: a long job of the same queue (it interleaves: only our 2 chunks + lanes of it count),
    # and a long high-priority job not yet planned (300 s: 10 chunks, all of them count).
    long_ahead = add_job(sessions, user_id, created_ago=60, duration=600.0)
    plan(sessions, long_ahead, 20, seconds=30.0)
    claim_plan(sessions, long_ahead, 20)
    add_job(sessions, user_id, priority=Priority.HIGH, duration=300.0, created_ago=1)
    ours = add_job(sessions, user_id, duration=45.0, created_ago=30)
    # Not ahead: a later job of the same queue, a low-priority one, and a finished one.
    add_job(sessions, user_id, duration=300.0)
    add_job(sessions, user_id, priority=Priority.LOW, duration=300.0, created_ago=90)
    finish(sessions, add_job(sessions, user_id, duration=300.0, created_ago=90), JobStatus.CANCELED)

    body = client.get(f"/v1/jobs/{ours}", headers=auth(key)).json()

    ahead_chunks = 10 + (2 + lanes)
    ahead_audio = 300.0 + (2 + lanes) * 30.0
    assert body["queue_position"] == ahead_chunks
    # The mean of the work in audio (at DEFAULT_PACE) and in chunks (at a full chunk each).
    by_audio = (ahead_audio + 45.0) / DEFAULT_PACE
    by_chunks = (ahead_chunks + 2) * settings.chunk_seconds / DEFAULT_PACE
    assert by_audio != by_chunks
    assert body["eta_seconds"] == round((by_audio + by_chunks) / 2, 1)


def test_the_eta_follows_the_pace_the_fleet_measured(client, sessions):
    user_id, key = create_user(sessions, Tier.PRO)
    # Lately: a job of 4 x 30 s in the pipeline for 20 s (an overlapping job's time counts once): 6x.
    done = transcribed_job(sessions, user_id, (0, 1, 2, 3), created_ago=100, duration=120.0)
    overlapping = add_job(sessions, user_id, created_ago=100, duration=None)
    finish(sessions, overlapping, JobStatus.CANCELED)
    with session_scope(sessions) as session:
        now = utcnow()
        JobRepository(session).get(done).created_at = now - timedelta(seconds=25)
        JobRepository(session).get(done).completed_at = now - timedelta(seconds=5)
        JobRepository(session).get(overlapping).created_at = now - timedelta(seconds=20)
        JobRepository(session).get(overlapping).completed_at = now - timedelta(seconds=10)
    before = utcnow()
    ours = add_job(sessions, user_id, duration=60.0)

    body = client.get(f"/v1/jobs/{ours}", headers=auth(key)).json()

    # Our own pending job is busy time too: however long this machine took since creating it
    # stretches the 20 s window (and the ETA, at half of it: 60 s of audio over 120 s done).
    waited = (utcnow() - before).total_seconds()
    assert body["queue_position"] == 0
    assert 60.0 / 6.0 - 0.1 <= body["eta_seconds"] <= 60.0 / 6.0 + waited / 2 + 0.1
    assert client.get(f"/v1/jobs/{done}", headers=auth(key)).json()["queue_position"] is None
    assert client.get(f"/v1/jobs/{done}", headers=auth(key)).json()["eta_seconds"] is None


def test_busy_time_counts_overlapping_work_once_within_the_window():
    now = utcnow()
    since = now - timedelta(seconds=100)

    def ago(seconds: float) -> Any:
        return now - timedelta(seconds=seconds)

    intervals = [(ago(150), ago(90)), (ago(95), ago(80)), (ago(50), None), (ago(40), ago(45))]

    assert math.isclose(busy_seconds(intervals, since, now), 20 + 50)
