"""What the end-to-end tests share: a running service started by the launcher, and waiting on it."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.conftest import ROOT, auth

LONGFORM = "longform/ljspeech_LJ001-0001_to_0032_concat.wav"
BOOTSTRAP_KEY = "vbt_e2eadmin_" + "k" * 32


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    url: str
    key: str
    log: Path

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=auth(key or self.key), timeout=60)

    def worker_pids(self) -> set[int]:
        children = psutil.Process(self.process.pid).children()
        return {c.pid for c in children if "worker.main" in " ".join(c.cmdline())}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def start_service(data: Path, workers: int, **env: str) -> Service:
    """`python -m scripts.stack` (what ./scripts/run starts), once its workers are registered."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    environment |= {
        "PORT": str(port),
        "VERBATIM_DATA_DIR": str(data),
        "VERBATIM_WORKERS": str(workers),
        "VERBATIM_BOOTSTRAP_API_KEY": BOOTSTRAP_KEY,
        **env,
    }
    log = data / "service.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "scripts.stack"],
        cwd=ROOT,
        env=environment,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    service = Service(process, f"http://127.0.0.1:{port}", BOOTSTRAP_KEY, log)
    try:
        wait_until(lambda: _workers_ready(service, workers), 120, f"the service to start ({log})", 0.5)
    except BaseException:
        stop(service)
        raise
    return service


def _workers_ready(service: Service, workers: int) -> bool:
    assert service.process.poll() is None, service.log.read_text()[-3000:]
    try:
        return bool(httpx.get(f"{service.url}/health", timeout=2).json()["workers"] == workers)
    except httpx.HTTPError:
        return False


def stop(service: Service) -> None:
    """SIGTERM, as an operator would: every process the launcher started must be gone after."""
    if service.process.poll() is not None:
        return
    children = psutil.Process(service.process.pid).children(recursive=True)
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(timeout=90) == 0, service.log.read_text()[-3000:]
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"left running: {alive}"


def submit(client: httpx.Client, path: Path, **fields: str) -> dict[str, Any]:
    with path.open("rb") as f:
        response = client.post("/v1/jobs", files={"file": (path.name, f)}, data=fields)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_done(client: httpx.Client, job_id: str, timeout: float = 240) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in ("completed", "failed") else None

    result: dict[str, Any] = wait_until(finished, timeout, f"job {job_id}")
    return result
