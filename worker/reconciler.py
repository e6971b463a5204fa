"""Finds work the fleet owes according to SQL but Redis will never deliver, and enqueues it again.

RQ loses work in known ways: a worker killed mid-task leaves its task "started" forever; Redis
restarted without persistence forgets every queue; a job popped by a worker that died is in no
registry at all. SQL is the source of truth, so one pass of the reconciler walks the pending and
processing jobs and, for each, compares what SQL says remains with what Redis holds:

- a pending job whose `prepare` is missing, ended or abandoned → `prepare` again;
- a chunk still to transcribe whose task was abandoned → the same task back at the front of its
  queue (its lane and the merge still depend on it);
- chunks whose tasks are missing or ended → new tasks and a new merge;
- a job with every chunk done and no merge waiting or running → its merge.

Each pass also keeps the fleet's periodic work (retention and the sweeps, `worker.maintenance`)
scheduled: a worker schedules it when it starts, and each run schedules the next, so a Redis that
lost its data would otherwise stop it until a worker restarts.

Every stage is idempotent and chunk results are fenced, so enqueueing something that was not
really lost costs a duplicate run, never a wrong transcript.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from core.db import session_scope
from core.enums import JobStatus, Priority
from core.logging import get_logger
from core.queues import WorkState, chunk_task_id, merge_task_id, prepare_task_id
from repositories.chunks import ChunkRepository
from repositories.jobs import JobRepository
from worker.context import WorkerContext
from worker.maintenance import FIRST_RUN_SECONDS

log = get_logger(__name__)

# Jobs younger than this are left alone: the API enqueues right after its commit.
GRACE_SECONDS = 10


@dataclass(frozen=True)
class ActiveJob:
    id: str
    status: JobStatus
    priority: Priority
    unfinished: list[int]
    # The chunk plan is complete (`prepare` finished cutting the audio).
    planned: bool


@dataclass
class Repairs:
    prepared: list[str] = field(default_factory=list)
    requeued: dict[str, list[int]] = field(default_factory=dict)
    reenqueued: dict[str, list[int]] = field(default_factory=dict)
    merged: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.prepared or self.requeued or self.reenqueued or self.merged)


def reconcile(ctx: WorkerContext) -> Repairs:
    repairs = Repairs()
    for job in _active_jobs(ctx):
        if job.status == JobStatus.PENDING or not job.planned:
            # `prepare` re-queues the chunks it cut whose tasks Redis lost, when it runs again.
            _check_prepare(ctx, job, repairs)
        elif job.unfinished:
            _check_chunks(ctx, job, repairs)
        else:
            _check_merge(ctx, job, repairs)
    if repairs:
        log.warning("reconciler.repaired", **vars(repairs))
    if ctx.queues.keep_retention_scheduled(FIRST_RUN_SECONDS):
        log.warning("reconciler.retention_rescheduled", in_seconds=FIRST_RUN_SECONDS)
    return repairs


def _active_jobs(ctx: WorkerContext) -> list[ActiveJob]:
    cutoff = datetime.now(UTC) - timedelta(seconds=GRACE_SECONDS)
    with session_scope(ctx.sessions) as session:
        jobs = JobRepository(session).list_active(created_before=cutoff)
        unfinished = ChunkRepository(session).unfinished_indexes([j.id for j in jobs])
        return [
            ActiveJob(j.id, j.status, j.priority, unfinished[j.id], j.chunks_total is not None) for j in jobs
        ]


def _check_prepare(ctx: WorkerContext, job: ActiveJob, repairs: Repairs) -> None:
    if ctx.queues.state(prepare_task_id(job.id)) in (WorkState.WAITING, WorkState.RUNNING):
        return
    ctx.queues.enqueue_prepare(job.id, job.priority)
    repairs.prepared.append(job.id)


def _check_chunks(ctx: WorkerContext, job: ActiveJob, repairs: Repairs) -> None:
    states = {index: ctx.queues.state(chunk_task_id(job.id, index)) for index in job.unfinished}
    abandoned = [i for i, state in states.items() if state == WorkState.ABANDONED]
    for index in abandoned:
        ctx.queues.requeue(chunk_task_id(job.id, index))
    lost = [i for i, state in states.items() if state in (WorkState.MISSING, WorkState.ENDED)]
    if lost:
        ctx.queues.enqueue_chunks(job.id, job.priority, lost)
    if abandoned:
        repairs.requeued[job.id] = abandoned
    if lost:
        repairs.reenqueued[job.id] = lost


def _check_merge(ctx: WorkerContext, job: ActiveJob, repairs: Repairs) -> None:
    if ctx.queues.state(merge_task_id(job.id)) in (WorkState.WAITING, WorkState.RUNNING):
        return
    ctx.queues.enqueue_merge(job.id, job.priority)
    repairs.merged.append(job.id)
