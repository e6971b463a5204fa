"""The worker loop, batching chunk tasks: several chunks, of one job or of many, in one model call.

RQ hands a worker one task at a time, from the highest non-empty queue. When that task transcribes
a chunk and the worker's model takes batches, the worker also takes the chunk tasks waiting at the
front of the queues, highest priority first, up to its batch size; marks every one of them started
under its name (so that, if the worker dies, the reconciler hands them to another worker); runs the
batch; and only then runs each task through RQ as usual, where it finds its chunk done and
finishes at once, releasing the rest of its lane and, in the end, the merge. Per-chunk rows, the
fences on their results, retries and the lanes all work exactly as for a chunk run on its own.

A batch never waits: it is whatever is queued when the worker is free. A `high` chunk waits at
most for the batch in hand (one model call), never behind queued `low` work, and it is taken into a
batch before anything of a lower queue.
"""

from typing import Any

from rq import SimpleWorker
from rq.job import Job
from rq.queue import Queue
from rq.timeouts import JobTimeoutException
from rq.worker import WorkerStatus

from core.logging import get_logger
from core.queues import TRANSCRIBE_TASK
from worker.context import WorkerContext, current
from worker.transcription import claim, transcribe_batch

log = get_logger(__name__)

# How far down each queue to look for chunk tasks to add to a batch.
LOOKAHEAD = 64


class BatchingWorker(SimpleWorker):
    """RQ's in-process worker, taking the chunk tasks queued beside the one it got as one batch."""

    @property
    def context(self) -> WorkerContext:
        """The process's worker context, the one its tasks use (`worker.context.current`)."""
        return current()

    def execute_job(self, job: Job, queue: Queue) -> None:
        batch_size = self.context.batch_size()
        if job.func_name != TRANSCRIBE_TASK or batch_size <= 1:
            super().execute_job(job, queue)
            return
        # Busy from here: a SIGTERM now is a warm shutdown after the batch, not an interruption.
        self.set_state(WorkerStatus.BUSY)
        taken = [(job, queue), *self._take_more(job, batch_size - 1)]
        self._mark_started([j for j, _ in taken])
        self._transcribe_together([j for j, _ in taken])
        for each, origin in taken:
            super().execute_job(each, origin)
            self.set_state(WorkerStatus.BUSY)  # RQ sets idle after each task; the batch is not done
        self.context.batch_outcomes.clear()
        self.set_state(WorkerStatus.IDLE)

    def _take_more(self, first: Job, wanted: int) -> list[tuple[Job, Queue]]:
        """Chunk tasks waiting in the queues, highest priority first, taken out of their queue.

        Within a queue, jobs take turns (one chunk of each job waiting, then a second of each, ...),
        so a short job's chunk queued behind a long job's is in the next batch, not the one after
        the long job's lane drains. A task queued twice (a recovery) is still one chunk.
        """
        taken: list[tuple[Job, Queue]] = []
        counts = {str(first.args[0]): 1}
        seen = {first.id}
        for queue in self.queues:
            for job in self._in_turn(self._waiting_chunks(queue, seen), counts):
                if len(taken) >= wanted:
                    return taken
                # LREM answers 1 to exactly one of several workers reaching for the same task.
                if self.connection.lrem(queue.key, 1, job.id):
                    taken.append((job, queue))
                    counts[str(job.args[0])] = counts.get(str(job.args[0]), 0) + 1
        return taken

    @staticmethod
    def _waiting_chunks(queue: Queue, seen: set[str]) -> list[Job]:
        ids = []
        for job_id in queue.get_job_ids(0, LOOKAHEAD - 1):
            if job_id not in seen:
                seen.add(job_id)
                ids.append(job_id)
        # One round trip for the whole look-ahead, not one per task (this runs before every batch).
        jobs = queue.job_class.fetch_many(ids, connection=queue.connection, serializer=queue.serializer)
        waiting = []
        for job_id, job in zip(ids, jobs, strict=True):
            if job is None:
                queue.remove(job_id)  # as `Queue.fetch_job` does with an id whose task is gone
            elif job.origin == queue.name and job.func_name == TRANSCRIBE_TASK:
                waiting.append(job)
        return waiting

    @staticmethod
    def _in_turn(waiting: list[Job], counts: dict[str, int]) -> list[Job]:
        """The waiting chunk tasks in the order jobs take turns: fewest chunks in the batch first,
        then queue order."""
        rank: dict[str, int] = {}
        keyed = []
        for position, job in enumerate(waiting):
            owner = str(job.args[0])
            rank[owner] = rank.get(owner, counts.get(owner, 0)) + 1
            keyed.append(((rank[owner], position), job))
        return [job for _, job in sorted(keyed, key=lambda item: item[0])]

    def _mark_started(self, jobs: list[Job]) -> None:
        """Started, under this worker's name: if it dies before running them, they are abandoned
        work the reconciler puts back in their queue."""
        with self.connection.pipeline() as pipeline:
            for job in jobs:
                job.prepare_for_execution(self.name, pipeline)
            pipeline.execute()

    def _transcribe_together(self, jobs: list[Job]) -> None:
        """Run the batch; each task then finds its chunk done, or the error that stopped it (which
        counts as that task's attempt: RQ retries or fails it as usual)."""
        pairs = [(str(j.args[0]), int(j.args[1])) for j in jobs]
        timeout = max(j.timeout or self.queue_class.DEFAULT_TIMEOUT for j in jobs)
        outcomes: dict[tuple[str, int], Any]
        try:
            with self.death_penalty_class(timeout, JobTimeoutException, job_id=jobs[0].id):
                works = claim(self.context, pairs)
                outcomes = dict(transcribe_batch(self.context, works)) if works else {}
        except Exception as exc:
            log.warning("batch.failed", chunks=len(pairs), error=f"{type(exc).__name__}: {exc}")
            outcomes = dict.fromkeys(pairs, exc)
        self.context.batch_outcomes.update(outcomes)
