"""A worker process: `python -m worker.main [--queues stt_jobs_high ...] [--burst]`.

Runs RQ's SimpleWorker, which executes each task in this process instead of forking a child per
task: the transcription model is loaded once here and reused for every chunk, and no model state
is ever shared across a fork. SIGTERM is a warm shutdown: the current task finishes, no new one is
taken.
"""

import argparse
import os
import socket
import sys

from redis import Redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from core.config import get_settings
from core.logging import configure_logging, get_logger
from core.queues import QUEUE_NAMES
from worker.context import build_context, install
from worker.maintenance import FIRST_RUN_SECONDS

log = get_logger(__name__)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run one Verbatim worker process.")
    parser.add_argument(
        "--queues",
        nargs="+",
        choices=list(QUEUE_NAMES.values()),
        help="queues to serve, in priority order (default: all three, high first)",
    )
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", help="worker name shown in the dashboard")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    if not settings.redis_url:
        log.error("worker.no_redis", hint="set REDIS_URL (./scripts/run sets it for you)")
        return 2
    redis = Redis.from_url(settings.redis_url)
    context = build_context(settings, redis)
    context.transcriber  # noqa: B018 - load the model before taking work, not on the first chunk
    install(context)
    context.queues.schedule_retention(FIRST_RUN_SECONDS)
    names = args.queues or [q.name for q in context.queues.ordered()]
    queues = [q for q in context.queues.ordered() if q.name in names]
    name = args.name or f"verbatim-{socket.gethostname()}-{os.getpid()}"
    worker = SimpleWorker(queues, connection=redis, serializer=JSONSerializer, name=name)
    log.info("worker.started", worker=name, queues=names)
    worker.work(with_scheduler=True, burst=args.burst, logging_level=settings.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
