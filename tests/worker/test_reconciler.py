"""The reconciler finds work SQL says is owed but Redis will never deliver, and enqueues it again."""

from datetime import UTC, datetime, timedelta

import pytest
from rq.job import Job as RQJob
from rq.job import JobStatus as RQStatus
from rq.serializers import JSONSerializer
from sqlalchemy import update

from core.db import session_scope
from core.enums import ChunkStatus, JobStatus, Priority, Tier
from core.queues import RETENTION_MARKER
from repositories.chunks import ChunkRepository
from repositories.models import Job
from tests.conftest import create_user, load_job, speech, submit_file
from worker import tasks
from worker.maintenance import FIRST_RUN_SECONDS
from worker.reconciler import reconcile

AUDIO = speech("librispeech/2412-153948-0000.flac")  # 11.7 s: three 4-second chunks


@pytest.fixture
def ctx(worker_ctx):
    worker_ctx.settings = worker_ctx.settings.model_copy(update={"chunk_seconds": 4.0})
    worker_ctx.queues._settings = worker_ctx.settings
    return worker_ctx


@pytest.fixture
def user_id(sessions):
    return create_user(sessions, Tier.PRO)[0]


def age(ctx, job_id, seconds=60):
    """Make a job look older than the reconciler's grace period."""
    with session_scope(ctx.sessions) as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(created_at=datetime.now(UTC) - timedelta(seconds=seconds))
        )


@pytest.fixture
def baseline(ctx, user_id, run_worker):
    """The transcript of the recording with nothing going wrong."""
    job_id = submit_file(ctx, user_id, AUDIO)
    run_worker()
    job, _ = load_job(ctx, job_id)
    assert job.status == JobStatus.COMPLETED
    return job.transcript_text


def test_redis_losing_everything_mid_job(ctx, user_id, run_worker, redis, baseline):
    job_id = submit_file(ctx, user_id, AUDIO)
    assert tasks.prepare(job_id) == "prepared"
    assert tasks.transcribe_chunk(job_id, 0) == "transcribed"
    redis.flushdb()  # a Redis restarted without persistence
    run_worker()
    assert load_job(ctx, job_id)[0].status == JobStatus.PROCESSING  # nothing left to run it
    age(ctx, job_id)
    repairs = reconcile(ctx)
    total = load_job(ctx, job_id)[0].chunks_total
    assert total >= 3
    assert repairs.reenqueued == {job_id: list(range(1, total))}
    run_worker()
    job, chunks = load_job(ctx, job_id)
    assert job.status == JobStatus.COMPLETED
    assert job.transcript_text == baseline
    assert [c.attempts for c in chunks] == [1] * len(chunks)  # the finished chunk was not redone
    assert not reconcile(ctx)


def abandon(ctx, rq_id, worker_name):
    """What a worker killed mid-task leaves: the task started, off the queue, owned by the dead."""
    queue = ctx.queues.queues[Priority.NORMAL]
    job = RQJob.fetch(rq_id, connection=ctx.queues.redis, serializer=JSONSerializer)
    queue.remove(job)
    job.worker_name = worker_name
    job.set_status(RQStatus.STARTED)
    job.save()


def test_a_chunk_abandoned_by_a_dead_worker_is_redone(ctx, user_id, run_worker, baseline):
    job_id = submit_file(ctx, user_id, AUDIO)
    assert tasks.prepare(job_id) == "prepared"
    with session_scope(ctx.sessions) as session:
        repository = ChunkRepository(session)
        repository.mark_started(repository.get_by_index(job_id, 0))
    abandon(ctx, f"chunk-{job_id}-0", "verbatim-gone-123")
    age(ctx, job_id)
    repairs = reconcile(ctx)
    assert repairs.requeued == {job_id: [0]} and not repairs.reenqueued
    run_worker()
    job, chunks = load_job(ctx, job_id)
    assert job.status == JobStatus.COMPLETED and job.transcript_text == baseline
    assert chunks[0].attempts == 2 and all(c.attempts == 1 for c in chunks[1:])


def test_a_chunk_running_on_a_live_worker_is_left_alone(ctx, user_id):
    job_id = submit_file(ctx, user_id, AUDIO)
    assert tasks.prepare(job_id) == "prepared"
    abandon(ctx, f"chunk-{job_id}-0", "verbatim-alive-1")
    ctx.queues.mark_alive("verbatim-alive-1")
    age(ctx, job_id)
    assert not reconcile(ctx)


def test_a_lost_prepare_is_enqueued_again(ctx, user_id, run_worker, redis):
    job_id = submit_file(ctx, user_id, AUDIO)
    redis.flushdb()
    assert not reconcile(ctx)  # too young: the API may be about to enqueue it
    age(ctx, job_id)
    assert reconcile(ctx).prepared == [job_id]
    run_worker()
    assert load_job(ctx, job_id)[0].status == JobStatus.COMPLETED


def test_a_lost_merge_is_enqueued_again(ctx, user_id, run_worker, redis):
    job_id = submit_file(ctx, user_id, AUDIO)
    assert tasks.prepare(job_id) == "prepared"
    for index in range(load_job(ctx, job_id)[0].chunks_total):
        assert tasks.transcribe_chunk(job_id, index) == "transcribed"
    redis.flushdb()
    age(ctx, job_id)
    assert reconcile(ctx).merged == [job_id]
    run_worker()
    job, chunks = load_job(ctx, job_id)
    assert job.status == JobStatus.COMPLETED
    assert {c.status for c in chunks} == {ChunkStatus.COMPLETED}


def test_an_early_merge_waits_for_unfinished_chunks(ctx, user_id):
    job_id = submit_file(ctx, user_id, AUDIO)
    assert tasks.prepare(job_id) == "prepared"
    assert tasks.merge(job_id) == "waiting"
    assert load_job(ctx, job_id)[0].status == JobStatus.PROCESSING


def retention_runs(ctx):
    """Retention runs Redis holds: scheduled, or queued to run now."""
    queue = ctx.queues.queues[Priority.NORMAL]
    held = queue.scheduled_job_registry.get_job_ids() + queue.get_job_ids()
    return [rq_id for rq_id in held if rq_id.startswith("retention-")]


def test_retention_is_scheduled_again_after_redis_lost_it(ctx, redis):
    assert ctx.queues.schedule_retention(FIRST_RUN_SECONDS)  # what a worker does when it starts
    redis.flushdb()  # a Redis restarted without persistence: the run and its marker are gone
    assert retention_runs(ctx) == []
    reconcile(ctx)
    assert len(retention_runs(ctx)) == 1
    assert redis.get(RETENTION_MARKER).decode() == retention_runs(ctx)[0]
    reconcile(ctx)
    assert len(retention_runs(ctx)) == 1  # once: the next pass finds it scheduled


def test_a_retention_run_waiting_behind_a_backlog_is_not_scheduled_twice(ctx, redis):
    assert ctx.queues.schedule_retention(FIRST_RUN_SECONDS)
    run = retention_runs(ctx)
    redis.expire(RETENTION_MARKER, 5)  # due long ago, still waiting: its marker is about to expire
    reconcile(ctx)
    assert redis.ttl(RETENTION_MARKER) > 60
    assert retention_runs(ctx) == run
