"""`scripts/worker`: N worker processes on this machine, joining the fleet of a running service.

    scripts/worker [--count N] [--queues stt_jobs_high ...] [--burst] [--grace SECONDS]

Any machine that reaches the service's `DATABASE_URL`, `REDIS_URL` and storage can add workers,
and take them away, at any time: a worker takes tasks from Redis, and SQL holds every result. With
`--queues`, the workers serve only those queues (a machine kept for `stt_jobs_high`, say).

The launcher stays in the foreground and replaces a worker that dies. SIGTERM or Ctrl-C stops
every worker after the chunk in hand (RQ's warm shutdown), waiting up to `--grace` seconds;
a second signal stops them at once, and the fleet's reconciler gives their chunks to others.
"""

import argparse
import os
import signal
import sys
import time
from dataclasses import dataclass
from types import FrameType

from core.config import Settings, get_settings
from core.queues import QUEUE_NAMES
from scripts.processes import WORKER_COMMAND, WorkerPool, say, signal_all

SUPERVISE_EVERY_SECONDS = 0.5


def parse_args(argv: list[str], settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/worker", description="Run N worker processes on this machine for a running service."
    )
    parser.add_argument(
        "--count",
        type=int,
        default=settings.workers,
        help="worker processes to run (default: VERBATIM_WORKERS, %(default)s)",
    )
    parser.add_argument(
        "--queues",
        nargs="+",
        choices=list(QUEUE_NAMES.values()),
        metavar="QUEUE",
        help="queues to serve, in priority order: %(choices)s (default: all three, high first)",
    )
    parser.add_argument("--burst", action="store_true", help="each worker exits when the queues are empty")
    parser.add_argument(
        "--grace",
        type=float,
        default=settings.chunk_timeout_seconds,
        help="seconds to wait for the chunks in hand on shutdown (default: the chunk timeout, %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    return args


def missing_settings(settings: Settings) -> list[str]:
    """The shared services this machine has not been told about."""
    missing = [] if settings.redis_url else ["REDIS_URL"]
    # Unset, DATABASE_URL falls back to a SQLite file in this machine's data folder, which the rest
    # of the fleet and the API cannot see.
    if settings.database_url == Settings(database_url="", data_dir=settings.data_dir).database_url:
        missing.append("DATABASE_URL")
    return missing


def worker_command(args: argparse.Namespace) -> list[str]:
    command = list(WORKER_COMMAND)
    if args.queues:
        command += ["--queues", *args.queues]
    if args.burst:
        command.append("--burst")
    return command


@dataclass
class Launcher:
    pool: WorkerPool
    burst: bool
    stopping: bool = False

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not self.stopping:
            say(f"received {name}; stopping the workers after their current chunks")
            self.stopping = True
        else:
            # RQ's cold shutdown: the chunks in hand are abandoned, and re-enqueued by the fleet.
            say(f"received {name} again; stopping the workers now")
            signal_all(self.pool.processes)

    def supervise(self) -> None:
        while not self.stopping:
            for worker in self.pool.reap():
                if self.burst and worker.returncode == 0:
                    self.pool.count -= 1  # it found the queues empty: its work is done
                else:
                    say(f"worker {worker.pid} exited with code {worker.returncode}; starting another")
            if self.burst and self.pool.count == 0:
                return
            self.pool.fill()
            time.sleep(SUPERVISE_EVERY_SECONDS)


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    args = parse_args(sys.argv[1:] if argv is None else argv, settings)
    missing = missing_settings(settings)
    if missing:
        say(
            f"set {' and '.join(missing)}: the workers of every machine share the service's database "
            "and Redis (and its storage)"
        )
        return 2
    launcher = Launcher(
        WorkerPool(env=dict(os.environ), count=args.count, command=worker_command(args)), args.burst
    )
    signal.signal(signal.SIGINT, launcher.on_signal)
    signal.signal(signal.SIGTERM, launcher.on_signal)
    queues = ", ".join(args.queues or QUEUE_NAMES.values())
    try:
        launcher.pool.fill()
        say(f"{args.count} workers serving {queues}; Ctrl-C or SIGTERM stops them")
        launcher.supervise()
    finally:
        launcher.pool.stop(args.grace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
