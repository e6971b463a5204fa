"""A worker process: `python -m worker.main [--queues stt_jobs_high ...] [--burst]`.

Runs RQ's SimpleWorker, which executes each task in this process instead of forking a child per
task: the transcription model is loaded once here and reused for every chunk, and no model state
is ever shared across a fork. Chunk tasks queued together are transcribed in one batched model
call (`worker.batching`). SIGTERM is a warm shutdown: the current task finishes, no new one is
taken.
"""

import argparse
import os
import secrets
import socket
import sys
import time

from redis import Redis
from rq.serializers import JSONSerializer

from core.config import get_settings
from core.logging import bind_fields, configure_logging, get_logger
from core.queues import QUEUE_NAMES
from worker.batching import BatchingWorker
from worker.context import WorkerContext, build_context, install
from worker.fleet import FleetDuties
from worker.maintenance import FIRST_RUN_SECONDS
from worker.webhooks import WebhookSenders

log = get_logger(__name__)

RESTART_DELAY_SECONDS = 2


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
    return serve(build_context(settings, Redis.from_url(settings.redis_url, socket_connect_timeout=5)), args)


def serve(context: WorkerContext, args: argparse.Namespace) -> int:
    """Install `context` in this process and run the worker loop until a warm shutdown (or, with
    `--burst`, until the queues are empty). `args` are this module's options (`parse_args`).

    Separate from `main` so that a process which needs another context, such as the scaling
    benchmark with its fixed-latency backend, runs exactly this loop.
    """
    settings, redis = context.settings, context.queues.redis
    # Host and pid say where it runs; the suffix keeps a restarted container (same host name, same
    # pid) from taking a dead worker's name, and with it the dead worker's started tasks.
    name = args.name or f"verbatim-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
    bind_fields(worker=name)  # on every line this process logs, the model's and RQ's included
    context.transcriber  # noqa: B018 - load the model before taking work, not on the first chunk
    install(context)
    context.queues.schedule_retention(FIRST_RUN_SECONDS)
    names = args.queues or [q.name for q in context.queues.ordered()]
    queues = [q for q in context.queues.ordered() if q.name in names]
    engine = context.engine()
    # Before the first task: the lanes of the first job it serves already count its batch.
    context.queues.publish_engine(name, engine)
    log.info("worker.started", worker=name, queues=names, **engine)
    while True:
        worker = BatchingWorker(queues, connection=redis, serializer=JSONSerializer, name=name)
        duties = FleetDuties(context, worker)
        # Threads of their own: a slow webhook endpoint must not hold up the duties' heartbeat.
        deliveries = WebhookSenders(context.sessions, settings)
        duties.start()
        deliveries.start()
        try:
            # The scheduler runs on the duties thread, not in a process RQ would fork (see worker.fleet).
            worker.work(with_scheduler=False, burst=args.burst, logging_level=settings.log_level)
        finally:
            # A burst worker first sends the webhooks its jobs made due; retries are left to the fleet.
            deliveries.stop(drain=args.burst)
            duties.stop()
        # RQ sets `_stop_requested` only for a SIGTERM that arrives during a task; an idle worker
        # just leaves its loop. The request date is set by every SIGTERM or SIGINT.
        if args.burst or worker._stop_requested or worker._shutdown_requested_date is not None:
            return 0
        # RQ's loop gives up on any unexpected error, a Redis restart included. The worker does
        # not: what it was doing is in SQL, and the reconciler hands anything lost to the fleet.
        log.warning("worker.loop_restarting", worker=name, in_seconds=RESTART_DELAY_SECONDS)
        time.sleep(RESTART_DELAY_SECONDS)


if __name__ == "__main__":
    sys.exit(main())
