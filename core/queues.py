"""The three priority queues and how work is put on them.

Tasks are referenced by name (the API never imports the worker) and take only ids, so the RQ
dashboard never shows audio, secrets or URLs. Job ids are deterministic, which makes a re-enqueue of
the same work recognisable. Workers listen to the queues in `ORDERED` order; RQ takes the first
non-empty one, so priority between queues is strict.
"""

from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq import Queue, Retry, Worker
from rq.job import Dependency, Job
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

FAILURE_TTL = 7 * 24 * 3600
RESULT_TTL = 24 * 3600


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
            job_id=f"prepare-{job_id}",
            **self._options(self._settings.prepare_timeout_seconds),
        )

    def enqueue_chunks(self, job_id: str, priority: Priority, indexes: list[int]) -> None:
        """One transcribe task per chunk, then a merge that runs once all of them have ended.

        The merge also runs if a chunk task failed for good (`allow_failure`), so that it can mark
        the job failed from what SQL says instead of leaving it processing forever.
        """
        queue = self.queues[priority]
        chunk_jobs = [
            Queue.prepare_data(
                TRANSCRIBE_TASK,
                (job_id, index),
                job_id=f"chunk-{job_id}-{index}",
                timeout=self._settings.chunk_timeout_seconds,
                failure_ttl=FAILURE_TTL,
                result_ttl=RESULT_TTL,
                retry=self._retry(),
            )
            for index in indexes
        ]
        enqueued: list[Job] = queue.enqueue_many(chunk_jobs)
        queue.enqueue(
            MERGE_TASK,
            job_id,
            job_id=f"merge-{job_id}",
            depends_on=Dependency(jobs=enqueued, allow_failure=True) if enqueued else None,
            **self._options(self._settings.merge_timeout_seconds),
        )

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
