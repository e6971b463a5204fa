"""The three priority queues and how work is put on them.

Tasks are referenced by name (the API never imports the worker) and take only ids, so the RQ
dashboard never shows audio, secrets or URLs. Job ids are deterministic, which makes a re-enqueue of
the same work recognisable. Workers listen to the queues in `ORDERED` order; RQ takes the first
non-empty one, so priority between queues is strict.
"""

import json
import uuid
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from redis import Redis
from rq import Queue, Retry, Worker
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Dependency, Job, JobStatus, cancel_job
from rq.serializers import JSONSerializer

from core.config import Settings
from core.enums import Priority

QUEUE_NAMES: dict[Priority, str] = {
    Priority.HIGH: "stt_jobs_high",
    Priority.NORMAL: "stt_jobs",
    Priority.LOW: "stt_jobs_low",
}
ORDERED = (Priority.HIGH, Priority.NORMAL, Priority.LOW)

PREPARE_TASK = "worker.tasks.prepare"
TRANSCRIBE_TASK = "worker.tasks.transcribe_chunk"
MERGE_TASK = "worker.tasks.merge"
RETENTION_TASK = "worker.maintenance.apply_retention"
# Present while a retention run is scheduled: whichever worker sets it schedules the run, so a
# fleet of workers starting together schedules one.
RETENTION_MARKER = "verbatim:retention:scheduled"
# How long the marker outlives the time its run is due (a run may wait behind other work).
RETENTION_GRACE_SECONDS = 600

FAILURE_TTL = 7 * 24 * 3600
RESULT_TTL = 24 * 3600


# What each worker transcribes with (JSON), refreshed with its alive key.
ENGINE_KEY = "verbatim:worker-engine:{}"


def prepare_task_id(job_id: str) -> str:
    return f"prepare-{job_id}"


def chunk_task_id(job_id: str, index: int) -> str:
    return f"chunk-{job_id}-{index}"


def merge_task_id(job_id: str) -> str:
    return f"merge-{job_id}"


# A worker process refreshes this key every few seconds while it lives; a task started by a worker
# whose key has expired was abandoned (the process was killed) and must be given to another.
ALIVE_KEY = "verbatim:worker-alive:{}"
ALIVE_TTL_SECONDS = 15


class WorkState(StrEnum):
    """Where a task stands in Redis, as far as recovering lost work is concerned."""

    WAITING = "waiting"  # queued, deferred behind a dependency, or scheduled for a retry
    RUNNING = "running"  # started by a worker that is alive
    ABANDONED = "abandoned"  # started by a worker that died
    ENDED = "ended"  # finished, failed, stopped or canceled
    MISSING = "missing"  # Redis has no such task (expired, or Redis lost its data)


@dataclass(frozen=True)
class QueueStats:
    name: str
    priority: Priority
    queued: int
    started: int
    failed: int
    workers: int


class QueueManager:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self._settings = settings
        self.queues = {
            p: Queue(name, connection=redis, serializer=JSONSerializer) for p, name in QUEUE_NAMES.items()
        }

    def ordered(self) -> list[Queue]:
        return [self.queues[p] for p in ORDERED]

    def declare(self) -> None:
        """List the three queues in RQ's registry of queues, which otherwise learns of a queue only
        from its first enqueue: the dashboard shows every queue, empty ones included."""
        self.redis.sadd(Queue.redis_queues_keys, *(q.key for q in self.ordered()))

    def _retry(self) -> Retry | None:
        retries, backoff = self._settings.task_retries, self._settings.retry_backoff_seconds
        return Retry(max=retries, interval=backoff[:retries]) if retries else None

    def _options(self, timeout: int) -> dict[str, Any]:
        return {
            "job_timeout": timeout,
            "failure_ttl": FAILURE_TTL,
            "result_ttl": RESULT_TTL,
            "retry": self._retry(),
        }

    def enqueue_prepare(self, job_id: str, priority: Priority) -> None:
        self.queues[priority].enqueue(
            PREPARE_TASK,
            job_id,
            job_id=prepare_task_id(job_id),
            **self._options(self._settings.prepare_timeout_seconds),
        )

    def lane_chain(self, job_id: str, priority: Priority) -> "LaneChain":
        """Release a job's chunks into its queue in lanes, one chunk at a time (see `LaneChain`)."""
        return LaneChain(self, job_id, priority, self.lanes(self.queues[priority]))

    def enqueue_chunks(self, job_id: str, priority: Priority, indexes: list[int]) -> None:
        """Release these chunks of a job in lanes, then merge when all have ended."""
        chain = self.lane_chain(job_id, priority)
        for index in indexes:
            chain.add(index)
        chain.finish()

    def enqueue_chunk(self, job_id: str, priority: Priority, index: int, after: str | None) -> None:
        self.queues[priority].enqueue(
            TRANSCRIBE_TASK,
            job_id,
            index,
            job_id=chunk_task_id(job_id, index),
            depends_on=Dependency(jobs=[after], allow_failure=True) if after else None,
            **self._options(self._settings.chunk_timeout_seconds),
        )

    def lanes(self, queue: Queue) -> int:
        """As many lanes as the workers serving the queue take chunks at once (a lone job still
        fills every worker's batch), and at least the configured minimum."""
        workers = Worker.all(queue=queue)
        return max(self._settings.chunk_lanes, sum(self.batch_size(w.name) for w in workers))

    def publish_engine(self, worker_name: str, engine: dict[str, Any]) -> None:
        """What a worker transcribes with (device, model, compute type, batch size), for /health and
        for the lanes; refreshed with the worker's alive key, gone soon after the worker."""
        self.redis.set(ENGINE_KEY.format(worker_name), json.dumps(engine), ex=ALIVE_TTL_SECONDS)

    def engines(self) -> dict[str, dict[str, Any]]:
        names = [w.name for w in Worker.all(connection=self.redis)]
        values = self.redis.mget([ENGINE_KEY.format(n) for n in names]) if names else []
        return {name: json.loads(raw) for name, raw in zip(names, values, strict=True) if raw}

    def batch_size(self, worker_name: str) -> int:
        raw = self.redis.get(ENGINE_KEY.format(worker_name))
        return int(json.loads(raw).get("batch_size", 1)) if raw else 1

    def cancel(self, job_id: str, indexes: list[int]) -> None:
        """Drop a job's waiting work from Redis. Best effort: a task that still runs finds the job
        canceled in SQL and does nothing."""
        ids = [prepare_task_id(job_id), merge_task_id(job_id), *(chunk_task_id(job_id, i) for i in indexes)]
        for rq_id in ids:
            # Already ended, already canceled, or expired from Redis: nothing left to drop.
            with suppress(NoSuchJobError, InvalidJobOperation):
                cancel_job(rq_id, connection=self.redis, serializer=JSONSerializer)

    def schedule_retention(self, delay_seconds: int) -> bool:
        """Schedule the next retention run unless one is scheduled. True if this call did."""
        rq_id = f"retention-{uuid.uuid4().hex[:12]}"
        # The marker names the run, so that `keep_retention_scheduled` can tell whether it still waits.
        if not self.redis.set(RETENTION_MARKER, rq_id, nx=True, ex=delay_seconds + RETENTION_GRACE_SECONDS):
            return False
        self.queues[Priority.NORMAL].enqueue_in(
            timedelta(seconds=delay_seconds), RETENTION_TASK, job_id=rq_id, **self._options(600)
        )
        return True

    def keep_retention_scheduled(self, delay_seconds: int) -> bool:
        """Schedule a retention run in `delay_seconds` if none is (a Redis that lost its data forgot
        both the run and its marker). True if this call did.

        A run still waiting or running keeps its marker alive: one queued behind a long backlog
        would otherwise outlive its marker's expiry and be scheduled a second time."""
        rq_id = self.redis.get(RETENTION_MARKER)
        if rq_id is None:
            return self.schedule_retention(delay_seconds)
        if isinstance(rq_id, bytes):
            rq_id = rq_id.decode()
        # EXPIRE's GT option would do the TTL check in the same call, but needs Redis 7 (the embedded
        # one is 6.2).
        waiting = self.state(rq_id) in (WorkState.WAITING, WorkState.RUNNING)
        if waiting and self.redis.ttl(RETENTION_MARKER) < RETENTION_GRACE_SECONDS:
            self.redis.expire(RETENTION_MARKER, RETENTION_GRACE_SECONDS)
        # Otherwise the run died without scheduling the next: its marker expires and a later call
        # schedules one (deleting the marker here could race with a run scheduling its successor).
        return False

    def retention_ran(self) -> None:
        self.redis.delete(RETENTION_MARKER)

    def state(self, rq_id: str) -> WorkState:
        try:
            job = Job.fetch(rq_id, connection=self.redis, serializer=JSONSerializer)
        except NoSuchJobError:
            return WorkState.MISSING
        status = job.get_status(refresh=False)
        if status == JobStatus.DEFERRED:
            return WorkState.WAITING if self._parent_pending(job) else WorkState.MISSING
        if status in (JobStatus.QUEUED, JobStatus.SCHEDULED):
            return WorkState.WAITING
        if status == JobStatus.STARTED:
            alive = job.worker_name and self.redis.exists(ALIVE_KEY.format(job.worker_name))
            return WorkState.RUNNING if alive else WorkState.ABANDONED
        return WorkState.ENDED

    def _parent_pending(self, job: Job) -> bool:
        """Whether a deferred task can still be released: one of its parents has not ended. A task
        deferred behind parents that are gone would wait forever, so it counts as lost."""
        for parent_id in job.dependency_ids:
            try:
                parent = Job.fetch(parent_id, connection=self.redis, serializer=JSONSerializer)
            except NoSuchJobError:
                continue
            if parent.get_status(refresh=False) not in (
                JobStatus.FINISHED,
                JobStatus.FAILED,
                JobStatus.STOPPED,
                JobStatus.CANCELED,
            ):
                return True
        return False

    def requeue(self, rq_id: str) -> None:
        """Put an abandoned task back at the front of its queue under the same id, so the tasks
        that depend on it (the rest of its lane, the merge) still follow it."""
        job = Job.fetch(rq_id, connection=self.redis, serializer=JSONSerializer)
        queue = Queue(job.origin, connection=self.redis, serializer=JSONSerializer)
        queue.started_job_registry.remove_executions(job)
        queue.enqueue_job(job, at_front=True)

    def enqueue_merge(self, job_id: str, priority: Priority, after: list[str] | None = None) -> None:
        """The job's merge, run once every task in `after` has ended (at once if none). A merge
        takes milliseconds and finishes a job, so it goes to the front of the queue."""
        self.queues[priority].enqueue(
            MERGE_TASK,
            job_id,
            job_id=merge_task_id(job_id),
            depends_on=Dependency(jobs=after, allow_failure=True, enqueue_at_front=True) if after else None,
            at_front=True,
            **self._options(self._settings.merge_timeout_seconds),
        )

    def mark_alive(self, worker_name: str, engine: dict[str, Any] | None = None) -> None:
        self.redis.set(ALIVE_KEY.format(worker_name), "1", ex=ALIVE_TTL_SECONDS)
        if engine is not None:
            self.publish_engine(worker_name, engine)

    def stats(self) -> list[QueueStats]:
        workers = Worker.all(connection=self.redis)
        return [
            QueueStats(
                name=queue.name,
                priority=priority,
                queued=queue.count,
                started=queue.started_job_registry.count,
                failed=queue.failed_job_registry.count,
                workers=sum(1 for w in workers if queue.name in w.queue_names()),
            )
            for priority, queue in ((p, self.queues[p]) for p in ORDERED)
        ]

    def worker_count(self) -> int:
        return Worker.count(connection=self.redis)


class LaneChain:
    """A job's chunk tasks as `lanes` RQ dependency chains: chunk n+lanes is queued only when chunk n
    has ended, at the back of the queue. So one job never has more than `lanes` chunks waiting, and
    the chunks of jobs in the same queue interleave: a short job submitted behind a three-hour one
    waits for a few chunks, not three hours. Priority between queues stays strict, since workers
    always take from the highest non-empty queue.

    Chunks are added one at a time, so `prepare` releases each as soon as it is cut. Dependencies
    allow failure, so a chunk that fails for good neither blocks its lane nor the merge, which then
    marks the job failed from what SQL says.
    """

    def __init__(self, queues: QueueManager, job_id: str, priority: Priority, lanes: int) -> None:
        self._queues, self._job_id, self._priority, self.lanes = queues, job_id, priority, lanes
        self._ids: list[str] = []

    def add(self, index: int, *, enqueue: bool = True) -> None:
        """The next chunk of the job; `enqueue=False` for one whose task is already in Redis (a resumed
        `prepare`): later chunks of its lane still follow it."""
        before = self._ids[-self.lanes] if len(self._ids) >= self.lanes else None
        if enqueue:
            self._queues.enqueue_chunk(self._job_id, self._priority, index, after=before)
        self._ids.append(chunk_task_id(self._job_id, index))

    def finish(self) -> None:
        """The merge, once the last task of every lane has ended (at once if there are none)."""
        self._queues.enqueue_merge(self._job_id, self._priority, after=self._ids[-self.lanes :] or None)
