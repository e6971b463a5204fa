"""Tier limits refuse work before it is queued, and leave no row or file behind."""

import dataclasses

import pytest

from core.db import session_scope
from core.enums import JobStatus, Priority, Tier
from core.tiers import POLICIES
from repositories.jobs import JobRepository
from tests.api.test_submit_errors import job_total, stored_files
from tests.conftest import auth, create_user, load_job, speech, submit_file

JFK = speech("jfk/jfk.flac")


@pytest.fixture
def free_policy(monkeypatch):
    """Shrink the free tier's limits for one test."""

    def set_limits(**limits):
        monkeypatch.setitem(POLICIES, Tier.FREE, dataclasses.replace(POLICIES[Tier.FREE], **limits))

    return set_limits


def post(client, key, path=JFK, **fields):
    with path.open("rb") as f:
        return client.post("/v1/jobs", headers=auth(key), files={"file": (path.name, f)}, data=fields)


def assert_nothing_left(client, key, settings, jobs_before):
    assert job_total(client, key) == jobs_before
    sources = [p for p in stored_files(settings) if p.name.startswith("source.")]
    assert len(sources) == jobs_before  # one upload per accepted job, none for the refused one
    accepted = {s.parts[1] for s in sources}
    assert {p.parts[1] for p in stored_files(settings) if len(p.parts) > 1} == accepted


def test_free_user_asking_high_priority_is_403(client, sessions, settings):
    _, key = create_user(sessions, Tier.FREE)
    response = post(client, key, priority="high")
    assert response.status_code == 403
    assert response.json()["detail"] == "the free tier may use priority up to 'low'"
    assert_nothing_left(client, key, settings, 0)


def test_over_the_active_jobs_limit_is_429_with_retry_after(client, sessions, settings, free_policy):
    free_policy(max_active_jobs=2)
    _, key = create_user(sessions, Tier.FREE)
    assert post(client, key).status_code == 202
    assert post(client, key).status_code == 202
    response = post(client, key)
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) > 0
    assert response.json() == {
        "error": "too_many_requests",
        "detail": "you have 2 active jobs; the free tier allows 2 at a time",
    }
    assert_nothing_left(client, key, settings, 2)


def test_over_the_monthly_quota_is_402(client, sessions, settings, free_policy, run_worker):
    free_policy(monthly_minutes=1)  # jfk is 11 s: five fit, the sixth does not
    _, key = create_user(sessions, Tier.FREE)
    for _ in range(5):
        assert post(client, key).status_code == 202
        run_worker()
    response = post(client, key)
    assert response.status_code == 402
    assert response.json()["error"] == "quota_exceeded"
    assert "0.1 of this month's audio minutes are left" in response.json()["detail"]
    assert_nothing_left(client, key, settings, 5)
    usage = client.get("/v1/usage", headers=auth(key)).json()
    assert usage["minutes_used"] == pytest.approx(55 / 60, abs=0.01)
    assert usage["minutes_left"] == pytest.approx(5 / 60, abs=0.01)


def test_a_spent_quota_refuses_before_reading_the_upload(client, sessions, settings, free_policy, run_worker):
    free_policy(monthly_minutes=0)
    _, key = create_user(sessions, Tier.FREE)
    response = post(client, key)
    assert response.status_code == 402
    assert response.json()["detail"] == "this month's 0 audio minutes of the free tier are used up"
    assert_nothing_left(client, key, settings, 0)


def test_over_the_tiers_size_is_413(client, sessions, settings, free_policy):
    free_policy(max_upload_mb=1)  # jfk.flac is 1.1 MB; the service-wide limit is 5 MB
    _, key = create_user(sessions, Tier.FREE)
    response = post(client, key)
    assert response.status_code == 413
    assert response.json()["detail"] == "the file is larger than the 1 MB limit"
    assert_nothing_left(client, key, settings, 0)
    _, pro = create_user(sessions, Tier.PRO)
    assert post(client, pro).status_code == 202


def test_over_the_tiers_duration_is_422_when_the_container_says_so(client, sessions, settings, free_policy):
    free_policy(max_duration_minutes=0)
    _, key = create_user(sessions, Tier.FREE)
    response = post(client, key)
    assert response.status_code == 422
    assert response.json()["detail"] == "the audio is 0.2 min long; the free tier allows up to 0 min per file"
    assert_nothing_left(client, key, settings, 0)


def test_over_the_duration_found_by_decoding_fails_the_job_unbilled(
    worker_ctx, sessions, client, free_policy, run_worker
):
    """The limit also holds when only decoding tells the length (a stream without a stated duration)."""
    free_policy(max_duration_minutes=0)
    user_id, key = create_user(sessions, Tier.FREE)
    job_id = submit_file(worker_ctx, user_id, JFK)  # as if the container had stated no duration
    run_worker()
    job, chunks = load_job(worker_ctx, job_id)
    assert job.status == JobStatus.FAILED
    assert job.error == "the audio is longer than the 0 min per file the free tier allows"
    assert chunks == []
    assert not (worker_ctx.settings.storage_dir / "jobs" / job_id / "chunks").exists()
    assert client.get("/v1/usage", headers=auth(key)).json()["minutes_used"] == 0


def test_audio_whose_length_only_decoding_tells_is_held_to_the_minutes_left(
    worker_ctx, sessions, client, free_policy, run_worker
):
    """A URL job, or a container that states no duration, is checked against the month's minutes
    once decoding has told its length: 5 s of the month are left, jfk is 11 s."""
    free_policy(monthly_minutes=1)
    user_id, key = create_user(sessions, Tier.FREE)
    with session_scope(sessions) as session:
        JobRepository(session).create(
            user_id=user_id,
            priority=Priority.LOW,
            status=JobStatus.COMPLETED,
            filename="earlier.flac",
            size_bytes=1,
            source_key="jobs/earlier/source.flac",
            audio_duration_seconds=55.0,
        )
    job_id = submit_file(worker_ctx, user_id, JFK)  # as if the container had stated no duration
    run_worker()
    job, _ = load_job(worker_ctx, job_id)
    assert job.status == JobStatus.FAILED
    assert job.error == "the audio is 0.2 min long but only 0.1 of this month's audio minutes were left"
    assert client.get("/v1/usage", headers=auth(key)).json()["minutes_used"] == pytest.approx(
        55 / 60, abs=0.01
    )


def test_usage_shows_the_months_minutes_and_the_tiers_limits(client, sessions, run_worker):
    _, key = create_user(sessions, Tier.PRO)
    assert post(client, key).status_code == 202
    run_worker()
    usage = client.get("/v1/usage", headers=auth(key)).json()
    assert usage["tier"] == "pro" and len(usage["month"]) == 7
    assert usage["minutes_used"] == pytest.approx(11 / 60, abs=0.01)
    assert usage["minutes_left"] == pytest.approx(3000 - 11 / 60, abs=0.01)
    assert usage["active_jobs"] == 0
    assert usage["limits"] == {
        "max_priority": "normal",
        "backends": ["local", "assemblyai"],
        "max_upload_mb": 1024,
        "max_duration_minutes": 240,
        "max_active_jobs": 10,
        "monthly_minutes": 3000,
    }
