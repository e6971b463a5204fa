"""Live job events against real processes (the launcher's API processes and one worker): the long
recording's chunks stream in order while it runs, a client that reconnects with `Last-Event-ID`
misses and repeats nothing, and a job behind a backlog sees its queue position count down and an
ETA that holds."""

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import speech, word_error_rate
from tests.e2e.support import LONGFORM, Service, submit, wait_until

pytestmark = pytest.mark.e2e

# A queue event comes at most every few seconds; the stream's heartbeat every 15 s.
READ_TIMEOUT = 60


@dataclass
class Event:
    id: str
    event: str
    data: dict[str, Any]


def read_events(response: httpx.Response) -> Iterator[Event]:
    """Server-sent events as a browser's EventSource reads them (comments and `retry:` skipped)."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line:
            if not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
            continue
        if "data" in fields:
            yield Event(fields["id"], fields["event"], json.loads(fields["data"]))
        fields = {}


def stream(client: httpx.Client, job_id: str, last_event_id: str | None = None) -> Any:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    return client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=READ_TIMEOUT)


def chunks_completed(client: httpx.Client, job_id: str) -> int:
    return int(client.get(f"/v1/jobs/{job_id}").json()["progress"]["chunks_completed"])


@pytest.fixture(scope="module")
def service(service_factory: Callable[..., Service]) -> Service:
    return service_factory(workers=1)


@dataclass
class Watched:
    job_id: str
    before: list[Event]  # the first connection's events, until it left after two chunks
    status_when_left: str
    after: list[Event]  # the second connection's, resumed from the last id the first one saw
    chunks: list[dict[str, Any]]  # GET /v1/jobs/{id}/chunks once the job is done


@pytest.fixture(scope="module")
def watched_longform(service: Service) -> Watched:
    """The long recording, watched by a client that leaves after two chunks and comes back (with
    `Last-Event-ID`) once more chunks were transcribed without it. Its run is also the fleet's
    measured pace for the backlog test."""
    with service.client() as client:
        job_id = submit(client, speech(LONGFORM))["id"]
        before: list[Event] = []
        with stream(client, job_id) as response:
            assert response.status_code == 200, response.read()
            for event in read_events(response):
                before.append(event)
                if sum(e.event == "chunk" for e in before) == 2:
                    break
        left = client.get(f"/v1/jobs/{job_id}").json()
        gone_for = left["progress"]["chunks_completed"] + 2
        wait_until(lambda: chunks_completed(client, job_id) >= gone_for, 120, "chunks done meanwhile")
        with stream(client, job_id, before[-1].id) as response:
            after = list(read_events(response))
        chunks = client.get(f"/v1/jobs/{job_id}/chunks").json()
    return Watched(job_id, before, left["status"], after, chunks)


def test_the_long_recordings_chunks_stream_in_order_and_a_reconnect_misses_and_repeats_nothing(
    watched_longform: Watched,
) -> None:
    w = watched_longform
    assert w.status_when_left == "processing", "two chunks came only once the job was done"
    streamed = [e.data for e in w.before + w.after if e.event == "chunk"]
    assert len(w.chunks) > 4
    assert [c["index"] for c in streamed] == list(range(len(w.chunks)))
    assert [(c["start"], c["end"], c["text"]) for c in streamed] == [
        (c["start"], c["end"], c["text"]) for c in w.chunks
    ]
    statuses = [e.data["status"] for e in w.before + w.after if e.event == "status"]
    assert statuses[-1] == "completed" and w.after[-1].event == "status"
    assert w.before[0].event == "status"
    partial = " ".join(c["text"] for c in streamed)
    reference = speech(LONGFORM).with_suffix(".txt").read_text()
    assert word_error_rate(reference, partial) < 0.15, partial


def test_behind_five_jobs_the_position_counts_down_and_the_first_eta_holds(
    service: Service, watched_longform: Watched
) -> None:
    with service.client() as client:
        ahead = [submit(client, speech("jfk/jfk.flac"))["id"] for _ in range(5)]
        job_id = submit(client, speech(LONGFORM))["id"]
        asked_at = time.monotonic()
        first = client.get(f"/v1/jobs/{job_id}").json()
        with stream(client, job_id) as response:
            events = list(read_events(response))
        waited = time.monotonic() - asked_at
        ahead_done = [client.get(f"/v1/jobs/{a}").json()["status"] for a in ahead]

    positions = [first["queue_position"]] + [e.data["queue_position"] for e in events if e.event == "queue"]
    eta = first["eta_seconds"]
    print(f"\nqueue positions {positions}; first ETA {eta:.1f} s, actual wait {waited:.1f} s")
    assert ahead_done == ["completed"] * 5
    assert events[-1].data["status"] == "completed"
    assert positions[0] >= 3, "the five jobs ahead were not counted"
    assert positions == sorted(positions, reverse=True), "the position went up"
    assert positions[-1] == 0
    assert abs(eta - waited) <= 0.5 * waited, f"ETA {eta:.1f} s for a wait of {waited:.1f} s"
