"""Cancel and retry against a concurrent writer: a request changes a job only if its status is still
the one it read. Each race is made deterministic: the competing write runs, to its commit, right
before the request's first write, after everything the request read."""

import re
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import event, select

from core.db import session_scope
from core.enums import ChunkStatus, JobStatus, Priority, Tier
from repositories.chunks import ChunkRepository
from repositories.jobs import JobRepository
from repositories.models import WebhookEvent
from tests.conftest import auth, create_user

# A retry's first write locks its user's row (its limits are checked under that lock).
WRITE = re.compile(r"\s*UPDATE (jobs|chunks|users)\b", re.IGNORECASE)


def make_job(sessions, user_id, status, chunks):
    """A job in `status` whose chunk plan is recorded, with chunks in the given statuses."""
    job_id = str(uuid.uuid4())
    with session_scope(sessions) as session:
        JobRepository(session).create(
            id=job_id,
            user_id=user_id,
            priority=Priority.NORMAL,
            status=status,
            filename="meeting.flac",
            size_bytes=1000,
            source_key=f"jobs/{job_id}/source.flac",
            audio_duration_seconds=12.0,
            chunks_total=len(chunks),
            webhook_url="https://hooks.example.com/verbatim",
        )
        ChunkRepository(session).add_plan(
            job_id,
            [
                {
                    "chunk_index": i,
                    "status": s,
                    "start_seconds": 4.0 * i,
                    "end_seconds": 4.0 * (i + 1),
                    "audio_key": f"jobs/{job_id}/chunks/{i:05d}.flac",
                }
                for i, s in enumerate(chunks)
            ],
        )
    return job_id


def load(sessions, job_id):
    with session_scope(sessions) as session:
        job = JobRepository(session).get(job_id)
        return job, [c.status for c in ChunkRepository(session).list_for_job(job_id)]


def events(sessions, job_id):
    with session_scope(sessions) as session:
        return list(session.scalars(select(WebhookEvent.type).where(WebhookEvent.job_id == job_id)))


@pytest.fixture
def before_the_first_write(client):
    """Arrange for `competing` to run once, just before the API's next UPDATE of a job, a chunk or
    a user."""
    engine = client.app.state.sessions.kw["bind"]
    pending: list[Callable[[], object]] = []

    def hook(conn, cursor, statement, parameters, context, executemany):
        if pending and WRITE.match(statement):
            pending.pop()()

    event.listen(engine, "before_cursor_execute", hook)
    yield pending.append
    event.remove(engine, "before_cursor_execute", hook)


def test_a_cancel_that_loses_to_the_merge_leaves_the_job_completed(client, sessions, before_the_first_write):
    user_id, key = create_user(sessions, Tier.PRO)
    job_id = make_job(sessions, user_id, JobStatus.PROCESSING, [ChunkStatus.COMPLETED] * 3)

    def the_merge_completes_it():
        with session_scope(sessions) as session:
            jobs = JobRepository(session)
            assert jobs.complete(jobs.get(job_id), text="and so my fellow", detected_language="en")

    before_the_first_write(the_merge_completes_it)
    response = client.post(f"/v1/jobs/{job_id}/cancel", headers=auth(key))

    assert response.status_code == 409, response.text
    assert response.json()["detail"].startswith("the job is completed")
    job, chunks = load(sessions, job_id)
    assert job.status == JobStatus.COMPLETED and job.transcript_text == "and so my fellow"
    assert chunks == [ChunkStatus.COMPLETED] * 3
    assert events(sessions, job_id) == ["job.completed"]  # and the webhook tells the truth


def test_two_concurrent_retries_enqueue_each_failed_chunk_once(client, sessions, before_the_first_write):
    user_id, key = create_user(sessions, Tier.PRO)
    job_id = make_job(
        sessions, user_id, JobStatus.FAILED, [ChunkStatus.COMPLETED, ChunkStatus.FAILED, ChunkStatus.FAILED]
    )
    answers = []
    before_the_first_write(lambda: answers.append(client.post(f"/v1/jobs/{job_id}/retry", headers=auth(key))))
    answers.append(client.post(f"/v1/jobs/{job_id}/retry", headers=auth(key)))

    # The competing retry ran to its end inside the first one: it answers first.
    assert [a.status_code for a in answers] == [202, 409], [a.text for a in answers]
    assert answers[1].json()["detail"].startswith("the job is processing")
    queued = client.app.state.queues.queues[Priority.NORMAL].get_job_ids()
    assert sorted(q for q in queued if q.startswith("chunk-")) == [f"chunk-{job_id}-1", f"chunk-{job_id}-2"]
    job, chunks = load(sessions, job_id)
    assert job.status == JobStatus.PROCESSING
    assert chunks == [ChunkStatus.COMPLETED, ChunkStatus.PENDING, ChunkStatus.PENDING]
