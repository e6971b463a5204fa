"""worker.batching: chunk tasks queued beside each other are transcribed in one model call, with the
same results as one by one, highest priority first, and recoverable if the worker dies mid-batch."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis import Redis
from rq.job import Job as RQJob
from rq.job import JobStatus as RQStatus
from rq.serializers import JSONSerializer
from sqlalchemy import update

import worker.batching
from core.db import session_scope
from core.enums import ChunkStatus, JobStatus, Priority, TranscriptFormat
from core.queues import WorkState, chunk_task_id, prepare_task_id
from repositories.models import Job
from storage.keys import transcript_key
from tests.conftest import create_user, load_job, speech, submit_file
from worker import tasks, transcription
from worker.batching import BatchingWorker
from worker.context import WorkerContext
from worker.reconciler import reconcile
from worker.transcription import ChunkWork

JFK = speech("jfk/jfk.flac")  # 11 s: three chunks of at most 4 s
SHORT = speech("librispeech/1089-134691-0000.flac")  # 2 s: one chunk

Pair = tuple[str, int]


@pytest.fixture
def ctx(worker_ctx: WorkerContext) -> WorkerContext:
    worker_ctx.settings = worker_ctx.settings.model_copy(update={"chunk_seconds": 4.0, "chunk_lanes": 2})
    worker_ctx.queues._settings = worker_ctx.settings
    return worker_ctx


@pytest.fixture
def user_id(sessions) -> str:
    return create_user(sessions)[0]


@pytest.fixture
def batches(monkeypatch) -> list[list[Pair]]:
    """The chunks of every batch the worker transcribes together, in order."""
    seen: list[list[Pair]] = []
    real = transcription.transcribe_batch

    def spy(ctx: WorkerContext, works: list[ChunkWork]) -> Any:
        seen.append([w.pair for w in works])
        return real(ctx, works)

    monkeypatch.setattr(worker.batching, "transcribe_batch", spy)
    return seen


def prepared(ctx: WorkerContext, job_id: str) -> str:
    """Run the job's `prepare` here, and take its task off the queue: only chunk tasks wait there."""
    assert tasks.prepare(job_id) == "prepared"
    for queue in ctx.queues.ordered():
        queue.remove(prepare_task_id(job_id))
    return job_id


def batch_size(monkeypatch, ctx: WorkerContext, size: int) -> None:
    """Pin the chunks a worker takes at once (the bundled model's own is 4 on the CPU)."""
    monkeypatch.setattr(ctx, "batch_size", lambda: size)


def chunk_results(ctx: WorkerContext, job_id: str) -> list[tuple[str | None, str, str | None, str]]:
    _, chunks = load_job(ctx, job_id)
    return [(c.text, json.dumps(c.segments), c.language, json.dumps(c.speech_spans)) for c in chunks]


def transcript_files(ctx: WorkerContext, job_id: str) -> list[bytes]:
    return [b"".join(ctx.storage.iter_bytes(transcript_key(job_id, f.value))) for f in TranscriptFormat]


def test_a_batch_of_two_jobs_chunks_gives_exactly_what_each_chunk_gives_alone(
    ctx, user_id, run_worker, batches, monkeypatch
):
    batch_size(monkeypatch, ctx, 1)
    alone = [submit_file(ctx, user_id, path) for path in (JFK, SHORT)]
    run_worker()
    assert batches == []  # one chunk per model call

    batch_size(monkeypatch, ctx, 4)
    together = [submit_file(ctx, user_id, path) for path in (JFK, SHORT)]
    run_worker()

    # Two lanes of the long job and the short job's chunk were waiting together: one model call.
    assert len({job for job, _ in batches[0]}) == 2, batches
    for single, batched in zip(alone, together, strict=True):
        job, chunks = load_job(ctx, batched)
        assert job.status == JobStatus.COMPLETED, job.error
        assert job.chunks_completed == job.chunks_total == len(chunks)
        assert chunk_results(ctx, batched) == chunk_results(ctx, single)  # byte for byte
        assert transcript_files(ctx, batched) == transcript_files(ctx, single)
    assert "country" in load_job(ctx, together[0])[0].transcript_text


def test_a_high_chunk_is_taken_into_a_batch_before_low_ones(ctx, user_id, redis, batches, monkeypatch):
    low = prepared(ctx, submit_file(ctx, user_id, JFK, Priority.LOW))
    high = prepared(ctx, submit_file(ctx, user_id, SHORT, Priority.HIGH))
    low_queue = ctx.queues.queues[Priority.LOW]
    assert low_queue.get_job_ids() == [chunk_task_id(low, 0), chunk_task_id(low, 1)]
    # The worker was handed the low job's first chunk; meanwhile a high chunk arrived.
    given = RQJob.fetch(chunk_task_id(low, 0), connection=redis, serializer=JSONSerializer)
    low_queue.remove(given)
    batch_size(monkeypatch, ctx, 2)

    worker_for(ctx, redis).execute_job(given, low_queue)

    assert batches == [[(low, 0), (high, 0)]]
    assert load_job(ctx, high)[1][0].status == ChunkStatus.COMPLETED
    # The low job's second chunk still waits, untouched; its first, done, released the third (its lane).
    assert low_queue.get_job_ids() == [chunk_task_id(low, 1), chunk_task_id(low, 2)]
    assert [c.status for c in load_job(ctx, low)[1]] == [ChunkStatus.COMPLETED, *[ChunkStatus.PENDING] * 2]
    # Each task then ran through RQ as usual and reported what the batch did for its chunk.
    for job_id in (low, high):
        task = RQJob.fetch(chunk_task_id(job_id, 0), connection=redis, serializer=JSONSerializer)
        assert (task.get_status(), task.return_value()) == (RQStatus.FINISHED, "transcribed")


def test_a_chunk_task_queued_twice_is_transcribed_once_in_a_batch(ctx, user_id, redis, batches, monkeypatch):
    job_id = prepared(ctx, submit_file(ctx, user_id, JFK))
    # A redelivered `prepare` (or the reconciler) queued chunk 1's task again under the same id.
    ctx.queues.enqueue_chunk(job_id, Priority.NORMAL, 1, after=None)
    queue = ctx.queues.queues[Priority.NORMAL]
    assert queue.get_job_ids() == [chunk_task_id(job_id, i) for i in (0, 1, 1)]
    given = RQJob.fetch(chunk_task_id(job_id, 0), connection=redis, serializer=JSONSerializer)
    queue.remove(given)
    batch_size(monkeypatch, ctx, 4)

    worker_for(ctx, redis).execute_job(given, queue)

    assert batches == [[(job_id, 0), (job_id, 1)]]  # one model row per chunk
    assert [c.attempts for c in load_job(ctx, job_id)[1][:2]] == [1, 1]


def worker_for(ctx: WorkerContext, redis: Redis, name: str = "batcher") -> BatchingWorker:
    worker = BatchingWorker(ctx.queues.ordered(), connection=redis, serializer=JSONSerializer, name=name)
    worker.register_birth()
    return worker


class WorkerKilled(BaseException):
    """The process dying mid-batch: nothing of the worker's own error handling runs."""


def make_old(ctx: WorkerContext, *job_ids: str) -> None:
    """Older than the reconciler's grace period."""
    with session_scope(ctx.sessions) as session:
        session.execute(
            update(Job).where(Job.id.in_(job_ids)).values(created_at=datetime.now(UTC) - timedelta(minutes=1))
        )


@pytest.mark.parametrize("stack", [pytest.param("real", marks=pytest.mark.integration)])
def test_chunks_taken_into_a_batch_are_started_under_the_worker_so_a_dead_workers_batch_is_recovered(
    stack, ctx, user_id, redis, run_worker, monkeypatch
):
    first = prepared(ctx, submit_file(ctx, user_id, JFK))
    second = prepared(ctx, submit_file(ctx, user_id, SHORT))
    queue = ctx.queues.queues[Priority.NORMAL]
    given = RQJob.fetch(chunk_task_id(first, 0), connection=redis, serializer=JSONSerializer)
    queue.remove(given)
    batch_size(monkeypatch, ctx, 4)
    doomed = worker_for(ctx, redis, name="verbatim-doomed-1")
    taken = [chunk_task_id(first, 0), chunk_task_id(first, 1), chunk_task_id(second, 0)]

    def die(*_: object) -> None:
        # The moment the model starts: every task of the batch is out of its queue by now.
        for rq_id in taken:
            task = RQJob.fetch(rq_id, connection=redis, serializer=JSONSerializer)
            assert (task.get_status(), task.worker_name) == (RQStatus.STARTED, doomed.name), rq_id
        raise WorkerKilled

    monkeypatch.setattr(worker.batching, "transcribe_batch", die)
    with pytest.raises(WorkerKilled):
        doomed.execute_job(given, queue)
    monkeypatch.undo()
    assert queue.get_job_ids() == []

    # While the worker is alive, its batch is its own.
    ctx.queues.mark_alive(doomed.name)
    make_old(ctx, first, second)
    assert not reconcile(ctx)
    assert {ctx.queues.state(rq_id) for rq_id in taken} == {WorkState.RUNNING}
    # It died: its alive key expires, and the reconciler hands the whole batch to another worker.
    redis.delete(f"verbatim:worker-alive:{doomed.name}")
    assert {ctx.queues.state(rq_id) for rq_id in taken} == {WorkState.ABANDONED}
    repairs = reconcile(ctx)
    assert repairs.requeued == {first: [0, 1], second: [0]} and not repairs.reenqueued
    run_worker()
    for job_id in (first, second):
        job, chunks = load_job(ctx, job_id)
        assert job.status == JobStatus.COMPLETED, job.error
        assert {c.status for c in chunks} == {ChunkStatus.COMPLETED}
    assert "country" in load_job(ctx, first)[0].transcript_text
