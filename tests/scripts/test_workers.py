"""`scripts/worker`: real worker processes against the real PostgreSQL and Redis."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from redis import Redis
from rq import Worker
from rq.worker import BaseWorker

from tests.conftest import ROOT

ALL_QUEUES = ["stt_jobs_high", "stt_jobs", "stt_jobs_low"]


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Launched:
    process: subprocess.Popen[bytes]
    log: Path
    redis: Redis

    def workers(self) -> list[psutil.Process]:
        children = psutil.Process(self.process.pid).children()
        return [c for c in children if c.is_running() and "worker.main" in " ".join(c.cmdline())]

    def registered(self, count: int) -> list[BaseWorker]:
        """Wait until `count` workers are registered in RQ, all of them children of this launcher."""

        def ready() -> list[BaseWorker] | None:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            workers = Worker.all(connection=self.redis)
            pids = {p.pid for p in self.workers()}
            return workers if len(workers) == count and {w.pid for w in workers} == pids else None

        result: list[BaseWorker] = wait_until(ready, 120, f"{count} registered workers ({self.log})")
        return result

    def stop(self) -> int:
        children = self.workers()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=90)
        _gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"left running: {alive}"
        return code


@pytest.fixture
def env(postgres_database: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    return environment | {
        "DATABASE_URL": postgres_database,
        "REDIS_URL": redis_url,
        "VERBATIM_DATA_DIR": str(tmp_path / "data"),
        "VERBATIM_LOG_JSON": "false",
    }


@pytest.fixture
def launch(env: dict[str, str], redis_url: str, tmp_path: Path) -> Iterator[Callable[..., Launched]]:
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    started: list[Launched] = []

    def start(*args: str) -> Launched:
        log = tmp_path / f"workers-{len(started)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "scripts.workers", *args],
            cwd=ROOT,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        started.append(Launched(process, log, redis))
        return started[-1]

    yield start
    for launched in started:
        if launched.process.poll() is None:
            launched.stop()
    redis.flushdb()
    redis.close()


@pytest.mark.integration
@pytest.mark.e2e
def test_count_workers_serve_every_queue_and_sigterm_stops_them_all(launch: Callable[..., Launched]) -> None:
    launched = launch("--count", "3")
    workers = launched.registered(3)
    assert all(w.queue_names() == ALL_QUEUES for w in workers)

    assert launched.stop() == 0, launched.log.read_text()[-3000:]
    # A warm shutdown unregisters each worker: the dashboard and the lanes stop counting them.
    assert Worker.all(connection=launched.redis) == []


@pytest.mark.integration
@pytest.mark.e2e
def test_queues_dedicates_the_workers_to_a_subset(launch: Callable[..., Launched]) -> None:
    launched = launch("--count", "2", "--queues", "stt_jobs_high")
    workers = launched.registered(2)
    assert [w.queue_names() for w in workers] == [["stt_jobs_high"]] * 2
    assert launched.stop() == 0


@pytest.mark.integration
@pytest.mark.e2e
def test_a_worker_that_dies_is_replaced(launch: Callable[..., Launched]) -> None:
    launched = launch("--count", "2")
    launched.registered(2)
    victim = launched.workers()[0]
    victim.kill()
    victim.wait(timeout=10)

    def replaced() -> bool:
        pids = {p.pid for p in launched.workers()}
        return len(pids) == 2 and victim.pid not in pids

    wait_until(replaced, 60, "a replacement worker")
    assert "exited with code -9; starting another" in launched.log.read_text()
    assert launched.stop() == 0


@pytest.mark.integration
@pytest.mark.e2e
def test_burst_workers_exit_once_the_queues_are_empty(launch: Callable[..., Launched]) -> None:
    launched = launch("--count", "2", "--burst")
    assert launched.process.wait(timeout=120) == 0, launched.log.read_text()[-3000:]
    assert "starting another" not in launched.log.read_text()


def test_the_wrapper_refuses_to_start_without_the_shared_services(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    environment["VERBATIM_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [str(ROOT / "scripts" / "worker"), "--count", "2"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "set REDIS_URL and DATABASE_URL" in done.stdout
