"""Billing: the audio a job transcribed is billed whatever the job's end, and the monthly quota reads
the same figure as GET /v1/usage."""

import dataclasses

import pytest

from core.db import session_scope
from core.enums import JobStatus, Tier
from core.tiers import POLICIES
from repositories.chunks import ChunkRepository
from repositories.jobs import JobRepository
from tests.conftest import auth, create_job_row, create_user, speech

JFK = speech("jfk/jfk.flac")
# A 100 s recording cut into three chunks; the stretch 80-85 s holds no speech and is in no chunk.
DURATION = 100.0
CHUNKS = [(0.0, 30.0), (30.0, 80.0), (85.0, 100.0)]


def processing_job(sessions, user_id: str, transcribed: list[int]) -> str:
    """A job in the pipeline whose chunks `transcribed` are done, as the worker leaves them."""
    job_id = create_job_row(
        sessions,
        user_id,
        filename="talk.flac",
        status=JobStatus.PROCESSING,
        audio_duration_seconds=DURATION,
        chunks_total=len(CHUNKS),
    )
    with session_scope(sessions) as session:
        plan = [
            {"chunk_index": i, "start_seconds": a, "end_seconds": b, "audio_key": f"jobs/{job_id}/{i}.wav"}
            for i, (a, b) in enumerate(CHUNKS)
        ]
        ChunkRepository(session).add_plan(job_id, plan)
        for index in transcribed:
            stored = ChunkRepository(session).complete_once(
                job_id, index, text=f"words of chunk {index}", segments=[], language="en", seconds=1.0
            )
            assert stored
    return job_id


def minutes_used(client, key: str) -> float:
    response = client.get("/v1/usage", headers=auth(key))
    assert response.status_code == 200, response.text
    return float(response.json()["minutes_used"])


def test_a_canceled_job_is_billed_the_chunks_it_transcribed(client, sessions):
    user_id, key = create_user(sessions, Tier.PRO)
    job_id = processing_job(sessions, user_id, transcribed=[0, 1])
    assert minutes_used(client, key) == pytest.approx(DURATION / 60, abs=0.01)  # reserved in full

    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=auth(key)).status_code == 200
    chunks = client.get(f"/v1/jobs/{job_id}/chunks", headers=auth(key)).json()
    assert [c["text"] for c in chunks] == ["words of chunk 0", "words of chunk 1", None]
    # What the owner can read is what they pay for: 0-30 s and 30-80 s, once each.
    assert minutes_used(client, key) == pytest.approx(80 / 60, abs=0.01)


def test_a_failed_job_is_billed_the_chunks_it_transcribed(client, sessions):
    user_id, key = create_user(sessions, Tier.PRO)
    job_id = processing_job(sessions, user_id, transcribed=[2])
    with session_scope(sessions) as session:
        jobs = JobRepository(session)
        job = jobs.get(job_id)
        assert job is not None and jobs.fail(job, "the backend gave up")
    assert client.get(f"/v1/jobs/{job_id}", headers=auth(key)).json()["status"] == "failed"
    assert minutes_used(client, key) == pytest.approx(15 / 60, abs=0.01)


def test_a_job_that_transcribed_nothing_costs_nothing(client, sessions):
    user_id, key = create_user(sessions, Tier.PRO)
    job_id = processing_job(sessions, user_id, transcribed=[])
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=auth(key)).status_code == 200
    assert minutes_used(client, key) == 0


def test_a_completed_job_is_billed_its_whole_duration(client, sessions):
    """Silence between chunks included, as before: the rule for partial jobs changes nothing here."""
    user_id, key = create_user(sessions, Tier.PRO)
    job_id = processing_job(sessions, user_id, transcribed=[0, 1, 2])
    with session_scope(sessions) as session:
        jobs = JobRepository(session)
        job = jobs.get(job_id)
        assert job is not None and jobs.complete(job, text="all of it", detected_language="en")
    assert minutes_used(client, key) == pytest.approx(DURATION / 60, abs=0.01)


def test_the_quota_counts_what_canceled_jobs_transcribed(client, sessions, monkeypatch):
    """Submit, read the chunks, cancel: the minutes are spent, and the next upload is refused."""
    monkeypatch.setitem(POLICIES, Tier.FREE, dataclasses.replace(POLICIES[Tier.FREE], monthly_minutes=1))
    user_id, key = create_user(sessions, Tier.FREE)
    job_id = processing_job(sessions, user_id, transcribed=[0, 1])
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=auth(key)).status_code == 200

    usage = client.get("/v1/usage", headers=auth(key)).json()
    assert usage["minutes_left"] == 0
    with JFK.open("rb") as f:
        response = client.post("/v1/jobs", headers=auth(key), files={"file": (JFK.name, f)})
    assert response.status_code == 402, response.text
    assert response.json()["error"] == "quota_exceeded"
