"""Chunks of jobs in one queue interleave; between queues, priority stays strict.

The worker batches chunk tasks, and as in production (`worker.main`) it publishes its engine before
taking work, so a job's lanes are as many as the chunks the worker takes at once. The batch is
pinned at 2 so that the long recording is several batches long.
"""

from collections.abc import Callable
from typing import Any

import pytest
from rq.serializers import JSONSerializer

import worker.batching
from core.enums import JobStatus, Priority, Tier
from core.queues import prepare_task_id
from tests.conftest import create_user, load_job, speech, submit_file
from worker import tasks, transcription
from worker.batching import BatchingWorker
from worker.context import WorkerContext
from worker.transcription import ChunkWork

LONG = speech("mfa_spontaneous/cold_corpus.wav")  # 26 s: seven 4-second chunks
SHORT = speech("librispeech/1089-134691-0000.flac")  # 2 s: one chunk
JFK = speech("jfk/jfk.flac")  # 11 s: three chunks
BATCH = 2

# Per batch: its chunks, and the high queue's chunk tasks still waiting when it started.
Batches = list[tuple[list[tuple[str, int]], list[str]]]


@pytest.fixture
def small_chunks(worker_ctx, monkeypatch):
    worker_ctx.settings = worker_ctx.settings.model_copy(update={"chunk_seconds": 4.0, "chunk_lanes": 2})
    worker_ctx.queues._settings = worker_ctx.settings
    monkeypatch.setattr(worker_ctx, "batch_size", lambda: BATCH)
    return worker_ctx


@pytest.fixture
def batches(small_chunks, monkeypatch) -> Batches:
    seen: Batches = []
    real = transcription.transcribe_batch
    high = small_chunks.queues.queues[Priority.HIGH]

    def spy(ctx: WorkerContext, works: list[ChunkWork]) -> Any:
        waiting = [i for i in high.get_job_ids() if i.startswith("chunk-")]
        seen.append(([w.pair for w in works], waiting))
        return real(ctx, works)

    monkeypatch.setattr(worker.batching, "transcribe_batch", spy)
    return seen


@pytest.fixture
def run_worker(small_chunks, redis) -> Callable[[], None]:
    """One in-process worker that, like `worker.main`, publishes its engine before the first task."""

    def run() -> None:
        runner = BatchingWorker(small_chunks.queues.ordered(), connection=redis, serializer=JSONSerializer)
        # The model's own plan says 4; the worker takes the pinned batch, and says so.
        engine = small_chunks.engine() | {"batch_size": small_chunks.batch_size()}
        small_chunks.queues.publish_engine(runner.name, engine)
        runner.work(burst=True)

    return run


def test_a_short_job_behind_a_long_one_of_the_same_tier_finishes_first(
    small_chunks, sessions, run_worker, batches
):
    alice, _ = create_user(sessions, Tier.PRO)
    bob, _ = create_user(sessions, Tier.PRO)
    long_job = submit_file(small_chunks, alice, LONG)
    short_job = submit_file(small_chunks, bob, SHORT)
    run_worker()
    long_row, long_chunks = load_job(small_chunks, long_job)
    short_row, _ = load_job(small_chunks, short_job)
    assert long_row.status == short_row.status == JobStatus.COMPLETED
    assert len(long_chunks) >= 6
    assert short_row.completed_at < long_row.completed_at
    # Bob waited for a few of Alice's chunks (the lanes ahead of him), not for all of them.
    before_bob = [c for c in long_chunks if c.completed_at < short_row.completed_at]
    assert len(before_bob) <= 4, [c.chunk_index for c in before_bob]
    # The worker did batch, and its lanes were its batch: never more chunks of Alice waiting than that.
    assert max(len(pairs) for pairs, _ in batches) == BATCH


def test_without_lanes_the_short_job_would_wait_for_the_whole_long_one(
    small_chunks, sessions, run_worker, monkeypatch
):
    """The control: with as many lanes as chunks, every chunk is queued at once, as before. (One
    chunk per model call: a batch also lets jobs take turns among the tasks it looks at, which is
    a second protection, not the one under test here.)"""
    monkeypatch.setattr(small_chunks, "batch_size", lambda: 1)
    small_chunks.settings = small_chunks.settings.model_copy(update={"chunk_lanes": 100})
    small_chunks.queues._settings = small_chunks.settings
    alice, _ = create_user(sessions, Tier.PRO)
    bob, _ = create_user(sessions, Tier.PRO)
    long_job = submit_file(small_chunks, alice, LONG)
    short_job = submit_file(small_chunks, bob, SHORT)
    run_worker()
    _, long_chunks = load_job(small_chunks, long_job)
    short_row, _ = load_job(small_chunks, short_job)
    assert all(c.completed_at < short_row.completed_at for c in long_chunks)


def test_every_high_chunk_runs_before_any_normal_chunk(small_chunks, sessions, run_worker):
    user, _ = create_user(sessions, Tier.ENTERPRISE)
    normal = submit_file(small_chunks, user, LONG, Priority.NORMAL)
    high = submit_file(small_chunks, user, LONG, Priority.HIGH)
    run_worker()
    _, normal_chunks = load_job(small_chunks, normal)
    high_row, high_chunks = load_job(small_chunks, high)
    assert high_row.status == JobStatus.COMPLETED
    assert max(c.completed_at for c in high_chunks) <= min(c.started_at for c in normal_chunks)


def test_normal_chunks_already_waiting_never_take_a_high_chunks_place_in_a_batch(
    small_chunks, sessions, run_worker, batches
):
    user, _ = create_user(sessions, Tier.ENTERPRISE)
    normal = submit_file(small_chunks, user, JFK, Priority.NORMAL)
    assert tasks.prepare(normal) == "prepared"  # its first chunks wait in the normal queue
    small_chunks.queues.queues[Priority.NORMAL].remove(prepare_task_id(normal))
    high = submit_file(small_chunks, user, LONG, Priority.HIGH)
    run_worker()
    normal_row, normal_chunks = load_job(small_chunks, normal)
    high_row, high_chunks = load_job(small_chunks, high)
    assert high_row.status == normal_row.status == JobStatus.COMPLETED
    assert high_row.completed_at < normal_row.completed_at
    for pairs, high_waiting in batches:
        jobs = [job for job, _ in pairs]
        assert jobs == sorted(jobs, key=lambda j: j != high)  # high chunks first in every batch
        if normal in jobs:
            assert high_waiting == [], pairs  # a normal chunk only fills room no high chunk wanted
    # At most the spare room of the high job's last batch went to normal chunks.
    high_done = max(c.completed_at for c in high_chunks)
    assert len([c for c in normal_chunks if c.started_at < high_done]) <= BATCH - 1


def test_in_a_batch_jobs_take_turns_so_a_short_job_is_not_left_for_the_next(
    small_chunks, sessions, run_worker, batches
):
    """Even with every chunk of a long job queued ahead of it (no lanes), a short job's chunk goes
    into the next batch: the batch takes one chunk of each waiting job before a second of any."""
    small_chunks.settings = small_chunks.settings.model_copy(update={"chunk_lanes": 100})
    small_chunks.queues._settings = small_chunks.settings
    alice, _ = create_user(sessions, Tier.PRO)
    bob, _ = create_user(sessions, Tier.PRO)
    long_job = submit_file(small_chunks, alice, LONG)
    short_job = submit_file(small_chunks, bob, SHORT)
    run_worker()
    _, long_chunks = load_job(small_chunks, long_job)
    short_row, _ = load_job(small_chunks, short_job)
    assert short_row.status == JobStatus.COMPLETED
    first_with_bob = next(i for i, (pairs, _) in enumerate(batches) if (short_job, 0) in pairs)
    # Bob's chunk was in the first batch formed after his prepare ran, beside one of Alice's.
    assert [job for job, _ in batches[first_with_bob][0]] == [long_job, short_job]
    assert any(c.completed_at > short_row.completed_at for c in long_chunks)
