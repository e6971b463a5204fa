"""A worker process's duties to the fleet, on a background thread beside the task loop.

- **Alive**: refresh `verbatim:worker-alive:<name>` every few seconds. RQ's own worker key cannot
  serve: a worker running a task in-process (SimpleWorker) stretches it to the task's timeout, so a
  killed worker would look alive for minutes. The reconciler hands a task started by a worker
  whose key expired to another worker.
- **Scheduler**: move due retries and the retention run into their queues. RQ would fork a
  scheduler process for this, which a SIGKILL of the worker leaves orphaned; a thread dies with
  its process, and RQ's scheduler locks make one worker of the fleet do it at a time.
- **Registration**: a Redis restarted empty forgets the worker; register it again so the
  dashboard and the lanes see it.
- **Reconciler**: every `VERBATIM_RECONCILE_SECONDS`, one worker of the fleet (whoever takes the
  lock) runs `worker.reconciler.reconcile`.
"""

import threading
import time
from collections.abc import Callable

from redis.exceptions import RedisError
from rq import worker_registration
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from rq.worker import BaseWorker
from rq.worker_registration import REDIS_WORKER_KEYS
from sqlalchemy.exc import SQLAlchemyError

from core.logging import get_logger
from core.queues import ALIVE_KEY, ENGINE_KEY
from worker.context import WorkerContext
from worker.reconciler import reconcile

log = get_logger(__name__)

TICK_SECONDS = 1.0
ALIVE_EVERY_SECONDS = 5.0
RECONCILER_LOCK = "verbatim:reconciler-lock"


class FleetDuties(threading.Thread):
    def __init__(self, ctx: WorkerContext, worker: BaseWorker) -> None:
        super().__init__(name="fleet-duties", daemon=True)
        self._ctx, self._worker = ctx, worker
        self._scheduler = RQScheduler(
            [q.name for q in worker.queues], connection=ctx.queues.redis, serializer=JSONSerializer
        )
        self._stopping = threading.Event()
        self._engine = ctx.engine()
        self._last: dict[str, float] = {}

    def run(self) -> None:
        while not self._stopping.wait(TICK_SECONDS):
            for duty, every in (
                (self._alive, ALIVE_EVERY_SECONDS),
                (self._schedule, TICK_SECONDS),
                (self._reconcile, float(self._ctx.settings.reconcile_seconds)),
            ):
                self._maybe(duty, every)

    def stop(self) -> None:
        """After RQ's loop has ended: release what this worker held in Redis."""
        self._stopping.set()
        self.join(timeout=5)
        try:
            self._scheduler.release_locks()
            # A duty that ran while RQ tore down may have registered the worker again: its hash
            # goes too, or the next loop of this process could not register the same name.
            self._ctx.queues.redis.delete(
                ALIVE_KEY.format(self._worker.name), ENGINE_KEY.format(self._worker.name), self._worker.key
            )
            worker_registration.unregister(self._worker)
        except RedisError:
            pass

    def _shutting_down(self) -> bool:
        return bool(self._worker._stop_requested or self._worker._shutdown_requested_date)

    def _maybe(self, duty: Callable[[], None], every: float) -> None:
        now = time.monotonic()
        if now - self._last.get(duty.__name__, 0.0) < every:
            return
        self._last[duty.__name__] = now
        try:
            duty()
        except (RedisError, SQLAlchemyError) as exc:
            # Redis or the database is away: keep trying every tick, never die.
            log.warning("fleet.duty_failed", duty=duty.__name__, error=str(exc), worker=self._worker.name)

    def _alive(self) -> None:
        if self._shutting_down():
            return  # RQ is unregistering the worker: registering it again would leave a ghost
        self._ctx.queues.mark_alive(self._worker.name, self._engine)
        redis = self._ctx.queues.redis
        if not redis.sismember(REDIS_WORKER_KEYS, self._worker.key):
            # RQ's own heartbeat may have re-created the worker's hash without the registration.
            redis.delete(self._worker.key)
            self._worker.register_birth()
            log.warning("worker.registered_again", worker=self._worker.name)

    def _schedule(self) -> None:
        if self._scheduler.acquired_locks != {q.name for q in self._worker.queues}:
            self._scheduler.acquire_locks()
        if self._scheduler.acquired_locks:
            self._scheduler.heartbeat()
            self._scheduler.enqueue_scheduled_jobs()

    def _reconcile(self) -> None:
        interval = self._ctx.settings.reconcile_seconds
        if self._ctx.queues.redis.set(RECONCILER_LOCK, self._worker.name, nx=True, ex=max(1, interval - 1)):
            reconcile(self._ctx)
