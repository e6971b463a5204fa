"""Job history: filters, search, sorting, stats, cancel, retry of failed chunks, retention."""

from datetime import UTC, datetime, timedelta
from pathlib import PurePath

import pytest
from redis import Redis
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer
from sqlalchemy import update

from core.db import session_scope
from core.enums import ChunkStatus, JobStatus, Tier
from core.queues import RETENTION_MARKER
from repositories.models import Job
from storage.keys import chunk_key
from tests.conftest import auth, create_user, load_job, shared_whisper, speech
from worker import maintenance

JFK = speech("jfk/jfk.flac")
LIBRI = speech("librispeech/2412-153948-0000.flac")


def post(client, key, path, **fields):
    with path.open("rb") as f:
        response = client.post("/v1/jobs", headers=auth(key), files={"file": (path.name, f)}, data=fields)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def ids(client, key, query=""):
    body = client.get(f"/v1/jobs?{query}", headers=auth(key)).json()
    return [j["id"] for j in body["items"]], body["total"]


def set_created(sessions, job_id, when):
    with session_scope(sessions) as session:
        session.execute(update(Job).where(Job.id == job_id).values(created_at=when))


@pytest.fixture
def history(client, sessions, run_worker):
    """Three jobs of one user: two completed (jfk in English, a LibriSpeech clip), one pending."""
    _, key = create_user(sessions, Tier.PRO)
    jfk = post(client, key, JFK, language="en")
    libri = post(client, key, LIBRI)
    run_worker()
    pending = post(client, key, JFK)
    now = datetime.now(UTC)
    set_created(sessions, jfk, now - timedelta(days=3))
    set_created(sessions, libri, now - timedelta(days=2))
    return key, jfk, libri, pending


def test_filters_search_and_sorting(client, history):
    key, jfk, libri, pending = history
    assert ids(client, key) == ([pending, libri, jfk], 3)
    assert ids(client, key, "sort=created_at") == ([jfk, libri, pending], 3)
    assert ids(client, key, "status=completed") == ([libri, jfk], 2)
    assert ids(client, key, "status=pending") == ([pending], 1)
    since = (datetime.now(UTC) - timedelta(days=2, hours=12)).isoformat()
    assert ids(client, key, f"created_after={since.replace('+', '%2B')}") == ([pending, libri], 2)
    before = (datetime.now(UTC) - timedelta(days=1)).replace(tzinfo=None).isoformat()
    assert ids(client, key, f"created_before={before}") == ([libri, jfk], 2)
    assert ids(client, key, "language=en")[1] == 2  # jfk asked for en; libri detected en
    assert ids(client, key, "q=AMERICANS") == ([jfk], 1)  # transcript text, any case
    assert ids(client, key, "q=2412-153948") == ([libri], 1)  # filename
    assert ids(client, key, "q=%25") == ([], 0)  # a literal %, not a wildcard
    assert ids(client, key, "sort=-duration&status=completed") == ([libri, jfk], 2)
    page = client.get("/v1/jobs?limit=1&offset=1&status=completed", headers=auth(key)).json()
    assert page["total"] == 2 and [j["id"] for j in page["items"]] == [jfk]
    assert client.get("/v1/jobs?status=done", headers=auth(key)).status_code == 422
    assert client.get("/v1/jobs?sort=size", headers=auth(key)).status_code == 422


def test_stats_for_the_caller_and_for_admins(client, sessions, history, run_worker):
    key = history[0]
    stats = client.get("/v1/jobs/stats", headers=auth(key)).json()
    assert stats["by_status"] == {"pending": 1, "processing": 0, "completed": 2, "failed": 0, "canceled": 0}
    assert stats["total_jobs"] == 3
    assert stats["audio_minutes"] == pytest.approx((11.0 + 11.66) / 60, abs=0.01)
    assert 0 < stats["average_processing_seconds"] < 60
    assert stats["success_rate"] == 1.0
    assert client.get("/v1/jobs/stats?all=true", headers=auth(key)).status_code == 403
    _, admin = create_user(sessions, Tier.ENTERPRISE, is_admin=True)
    assert client.get("/v1/jobs/stats", headers=auth(admin)).json()["total_jobs"] == 0
    assert client.get("/v1/jobs/stats?all=true", headers=auth(admin)).json()["total_jobs"] == 3


def test_cancel_drops_the_pending_chunks(client, sessions, worker_ctx, redis, run_worker):
    _, key = create_user(sessions, Tier.PRO)
    worker_ctx.settings = worker_ctx.settings.model_copy(update={"chunk_seconds": 4.0})
    job_id = post(client, key, JFK)
    from worker import tasks

    assert tasks.prepare(job_id) == "prepared"  # planned; chunk tasks wait in the queue
    canceled = client.post(f"/v1/jobs/{job_id}/cancel", headers=auth(key))
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    rq_job = RQJob.fetch(f"chunk-{job_id}-0", connection=redis, serializer=JSONSerializer)
    assert rq_job.get_status() == "canceled"
    run_worker()
    job, chunks = load_job(worker_ctx, job_id)
    assert job.status == JobStatus.CANCELED and job.chunks_completed == 0
    assert {c.status for c in chunks} == {ChunkStatus.CANCELED}
    again = client.post(f"/v1/jobs/{job_id}/cancel", headers=auth(key))
    assert again.status_code == 409 and "canceled" in again.json()["detail"]
    transcript = client.get(f"/v1/jobs/{job_id}/transcript", headers=auth(key))
    assert transcript.status_code == 202  # never completes: no transcript to give


class CountingFailOnce:
    """Fails the first attempt at chunk `bad`, counts every transcription per chunk start."""

    def __init__(self, inner, bad_start):
        self.inner, self.bad_start, self.calls = inner, bad_start, []

    def transcribe(self, audio, language):
        first = audio.name  # chunk files are named by index
        self.calls.append(first)
        if first == self.bad_start and self.calls.count(first) == 1:
            raise ConnectionError("backend went away")
        return self.inner.transcribe(audio, language)


def test_retry_reruns_only_the_failed_chunks(client, sessions, worker_ctx, run_worker):
    worker_ctx.settings = worker_ctx.settings.model_copy(update={"chunk_seconds": 4.0})
    second_chunk = PurePath(chunk_key(job_id="any", index=1)).name  # 00001.flac
    transcriber = CountingFailOnce(shared_whisper(worker_ctx.settings), second_chunk)
    worker_ctx._transcriber = transcriber
    _, key = create_user(sessions, Tier.PRO)
    job_id = post(client, key, JFK)
    run_worker()
    failed = client.get(f"/v1/jobs/{job_id}", headers=auth(key)).json()
    assert failed["status"] == "failed"
    assert "chunk 1: ConnectionError: backend went away" in failed["error"]
    chunks_before = {c.chunk_index: c for c in load_job(worker_ctx, job_id)[1]}
    calls_before = len(transcriber.calls)

    retried = client.post(f"/v1/jobs/{job_id}/retry", headers=auth(key))
    assert retried.status_code == 202 and retried.json()["status"] == "processing"
    run_worker()
    done = client.get(f"/v1/jobs/{job_id}", headers=auth(key)).json()
    assert done["status"] == "completed" and done["error"] is None
    assert transcriber.calls[calls_before:] == [second_chunk]
    job, chunks = load_job(worker_ctx, job_id)
    assert job.chunks_completed == job.chunks_total == len(chunks)
    for chunk in chunks:
        expected = chunks_before[chunk.chunk_index].attempts + (1 if chunk.chunk_index == 1 else 0)
        assert chunk.attempts == expected
    assert "country" in client.get(f"/v1/jobs/{job_id}/transcript", headers=auth(key)).text.lower()
    assert client.post(f"/v1/jobs/{job_id}/retry", headers=auth(key)).status_code == 409


def test_retention_through_the_admin_api(client, sessions, settings, history):
    key, jfk, libri, pending = history
    set_created(sessions, pending, datetime.now(UTC) - timedelta(days=40))  # old but still active
    set_created(sessions, jfk, datetime.now(UTC) - timedelta(days=40))
    _, admin = create_user(sessions, Tier.ENTERPRISE, is_admin=True)
    assert client.delete("/v1/admin/jobs?older_than_days=30", headers=auth(key)).status_code == 403
    response = client.delete("/v1/admin/jobs?older_than_days=30", headers=auth(admin))
    assert response.status_code == 200 and response.json() == {"deleted": 1}
    assert ids(client, key)[0] == [libri, pending]
    assert not (settings.storage_dir / "jobs" / jfk).exists()
    assert (settings.storage_dir / "jobs" / libri / "transcript.txt").is_file()
    assert client.delete("/v1/admin/jobs?older_than_days=-1", headers=auth(admin)).status_code == 422


def test_retention_task_of_the_worker_fleet(client, sessions, settings, worker_ctx, redis: Redis, history):
    key, jfk, libri, pending = history
    set_created(sessions, libri, datetime.now(UTC) - timedelta(days=settings.retention_days + 1))
    assert maintenance.apply_retention() == 1
    assert ids(client, key)[0] == [pending, jfk]
    assert not (settings.storage_dir / "jobs" / libri).exists()
    assert redis.exists(RETENTION_MARKER)  # the next run is scheduled
    scheduled = worker_ctx.queues.queues[next(iter(worker_ctx.queues.queues))].scheduled_job_registry
    assert any(q.scheduled_job_registry.get_job_ids() for q in worker_ctx.queues.queues.values()), scheduled
    assert worker_ctx.queues.schedule_retention(60) is False  # exactly one run is scheduled
