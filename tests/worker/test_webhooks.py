"""Webhook events: written with the job's end, delivered by the fleet's senders to a real endpoint."""

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from core.db import session_scope
from core.enums import JobStatus, Priority
from repositories.jobs import JobRepository
from repositories.models import Job, User, WebhookAttempt, WebhookEvent, WebhookStatus, utcnow
from repositories.webhooks import WebhookRepository, WebhookSettings, new_secret
from tests.conftest import create_user, speech, submit_file
from tests.fakes.webhook_receiver import webhook_receiver
from worker.main import parse_args, serve
from worker.webhooks import Backoff, WebhookDeliveries, sign

TRANSCRIPT = "the private words of the recording"


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"webhook_allow_private": True, "webhook_timeout_seconds": 2.0})


@pytest.fixture
def receiver():
    with webhook_receiver() as r:
        yield r


class CountingDeliveries(WebhookDeliveries):
    sent = 0

    def deliver_one(self):
        delivered = super().deliver_one()
        self.sent += delivered
        return delivered


def sender(sessions, settings, **overrides):
    """A delivery loop whose retries come within a fraction of a second."""
    return CountingDeliveries(
        sessions,
        settings.model_copy(update=overrides),
        backoff=Backoff(base_seconds=0.05, cap_seconds=0.2),
        idle_seconds=0.02,
    )


@pytest.fixture
def deliveries(sessions, settings):
    return sender(sessions, settings)


@pytest.fixture
def user(sessions):
    """(user id, the user's signing secret)."""
    user_id, _ = create_user(sessions)
    secret = new_secret()
    update_user(sessions, user_id, webhook_secret=secret)
    return user_id, secret


def update_user(sessions, user_id, **values):
    with session_scope(sessions) as session:
        session.execute(update(User).where(User.id == user_id).values(**values))


def make_job(sessions, user_id, webhook_url=None):
    job_id = str(uuid.uuid4())
    with session_scope(sessions) as session:
        JobRepository(session).create(
            id=job_id,
            user_id=user_id,
            priority=Priority.NORMAL,
            status=JobStatus.PROCESSING,
            filename="meeting.flac",
            size_bytes=1000,
            source_key=f"jobs/{job_id}/source.flac",
            audio_duration_seconds=11.0,
            webhook_url=webhook_url,
        )
    return job_id


def complete(sessions, job_id):
    with session_scope(sessions) as session:
        jobs = JobRepository(session)
        return jobs.complete(jobs.get(job_id), text=TRANSCRIPT, detected_language="en")


def fail(sessions, job_id, error="the audio could not be decoded"):
    with session_scope(sessions) as session:
        jobs = JobRepository(session)
        return jobs.fail(jobs.get(job_id), error)


def events_of(sessions, job_id):
    with session_scope(sessions) as session:
        return list(WebhookRepository(session).list_for_job(job_id))


def pending(sessions):
    with session_scope(sessions) as session:
        stmt = select(WebhookEvent.id).where(WebhookEvent.status == WebhookStatus.PENDING)
        return list(session.execute(stmt).scalars())


def deliver_until_settled(deliveries, sessions, timeout=15.0):
    """Run one sender until no event is pending (retries included), failing after `timeout`."""
    deadline = time.monotonic() + timeout
    while pending(sessions):
        assert time.monotonic() < deadline, "webhook events still pending"
        if not deliveries.deliver_one():
            time.sleep(0.02)  # the next retry is not due yet


def verify(received, secret):
    """What a receiver does with the `standardwebhooks` library; raises if the signature is wrong."""
    return Webhook(secret).verify(received.body, received.headers)


def test_a_completed_job_sends_exactly_one_signed_event(sessions, settings, receiver, deliveries, user):
    user_id, secret = user
    job_id = make_job(sessions, user_id, receiver.url)

    assert complete(sessions, job_id) is True
    assert complete(sessions, job_id) is False  # a second merge of the same job
    assert fail(sessions, job_id) is False
    deliver_until_settled(deliveries, sessions)
    assert deliveries.deliver_one() is False

    [request] = receiver.received()
    payload = verify(request, secret)
    [event] = events_of(sessions, job_id)
    assert request.method == "POST" and request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == event.id and event.id.startswith("msg_")
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    assert request.headers["webhook-signature"].startswith("v1,")
    assert payload["type"] == "job.completed"
    job = payload["job"]
    assert {
        k: job[k] for k in ("id", "status", "filename", "language", "audio_duration_seconds", "error")
    } == {
        "id": job_id,
        "status": "completed",
        "filename": "meeting.flac",
        "language": "en",
        "audio_duration_seconds": 11.0,
        "error": None,
    }
    assert job["created_at"] and job["completed_at"] and payload["timestamp"]
    assert payload["links"] == {
        "job": f"{settings.base_url}/v1/jobs/{job_id}",
        "transcript": f"{settings.base_url}/v1/jobs/{job_id}/transcript",
    }
    assert TRANSCRIPT.encode() not in request.body
    assert (event.status, event.attempts, event.next_attempt_at) == (WebhookStatus.DELIVERED, 1, None)
    assert event.delivered_at is not None
    assert [(a.number, a.status_code, a.error) for a in event.attempt_log] == [(1, 200, None)]


def test_the_signature_is_the_standard_webhooks_one():
    secret = new_secret()
    body = b'{"type":"job.completed"}'
    expected = Webhook(secret).sign("msg_1", datetime.fromtimestamp(1_700_000_000, UTC), body.decode())
    assert sign(secret, "msg_1", 1_700_000_000, body) == expected


def test_the_database_allows_one_completed_event_per_job(sessions, user):
    job_id = make_job(sessions, user[0], "http://127.0.0.1:9/hook")
    assert complete(sessions, job_id)
    with pytest.raises(IntegrityError), session_scope(sessions) as session:
        session.add(_event(job_id, user[0], "job.completed"))
    with session_scope(sessions) as session:  # a retried job may fail twice
        session.add(_event(job_id, user[0], "job.failed"))
        session.add(_event(job_id, user[0], "job.failed"))
    assert sorted(e.type for e in events_of(sessions, job_id)) == [
        "job.completed",
        "job.failed",
        "job.failed",
    ]


def _event(job_id, user_id, event_type):
    return WebhookEvent(
        id=f"msg_{uuid.uuid4().hex}",
        job_id=job_id,
        user_id=user_id,
        url="http://127.0.0.1:9/hook",
        type=event_type,
        payload={},
        next_attempt_at=utcnow(),
    )


def test_a_failed_job_goes_to_the_owners_default_endpoint(sessions, receiver, deliveries, user):
    user_id, secret = user
    update_user(sessions, user_id, webhook_url=receiver.url)
    job_id = make_job(sessions, user_id)

    assert fail(sessions, job_id, "chunk 0 could not be transcribed") is True
    deliver_until_settled(deliveries, sessions)

    [request] = receiver.received()
    payload = verify(request, secret)
    assert payload["type"] == "job.failed"
    assert payload["job"]["status"] == "failed"
    assert payload["job"]["error"] == "chunk 0 could not be transcribed"
    [event] = events_of(sessions, job_id)
    assert (event.url, event.status) == (receiver.url, WebhookStatus.DELIVERED)


def test_the_jobs_own_url_wins_over_the_default(sessions, receiver, deliveries, user):
    update_user(sessions, user[0], webhook_url="http://127.0.0.1:9/default")
    job_id = make_job(sessions, user[0], receiver.url)
    complete(sessions, job_id)
    deliver_until_settled(deliveries, sessions)
    assert len(receiver.received()) == 1
    assert [e.url for e in events_of(sessions, job_id)] == [receiver.url]


def test_no_endpoint_means_no_event(sessions, user):
    job_id = make_job(sessions, user[0])
    assert complete(sessions, job_id) is True
    assert events_of(sessions, job_id) == []


def test_an_endpoint_answering_500_twice_gets_the_event_on_the_third_try(
    sessions, receiver, deliveries, user
):
    user_id, secret = user
    receiver.answer(500, 500)
    job_id = make_job(sessions, user_id, receiver.url)
    complete(sessions, job_id)

    deliver_until_settled(deliveries, sessions)

    requests = receiver.received()
    assert len(requests) == 3
    assert len({r.headers["webhook-id"] for r in requests}) == 1  # one event, three attempts
    assert all(verify(r, secret)["type"] == "job.completed" for r in requests)
    [event] = events_of(sessions, job_id)
    assert (event.status, event.attempts) == (WebhookStatus.DELIVERED, 3)
    assert [(a.number, a.status_code) for a in event.attempt_log] == [(1, 500), (2, 500), (3, 200)]
    assert event.delivered_at == event.attempt_log[-1].started_at


def test_410_disables_the_endpoint(sessions, receiver, deliveries, user):
    user_id, _ = user
    update_user(sessions, user_id, webhook_url=receiver.url)
    receiver.answer(410)
    jobs = [make_job(sessions, user_id) for _ in range(2)] + [make_job(sessions, user_id, receiver.url)]
    for job_id in jobs:
        complete(sessions, job_id)

    deliver_until_settled(deliveries, sessions)
    assert deliveries.deliver_one() is False

    assert len(receiver.received()) == 1  # the other two events were dropped, not sent
    statuses = [e.status for job_id in jobs for e in events_of(sessions, job_id)]
    assert statuses == [WebhookStatus.DISABLED] * 3
    attempts = [e.attempts for job_id in jobs for e in events_of(sessions, job_id)]
    assert sorted(attempts) == [0, 0, 1]
    with session_scope(sessions) as session:
        assert session.get(User, user_id).webhook_url is None
    later = make_job(sessions, user_id)
    complete(sessions, later)
    assert events_of(sessions, later) == []  # no default endpoint any more


def test_a_timeout_is_retried(sessions, settings, receiver, user):
    deliveries = sender(sessions, settings, webhook_timeout_seconds=0.5)
    receiver.delay_next(2.0)
    job_id = make_job(sessions, user[0], receiver.url)
    complete(sessions, job_id)

    deliver_until_settled(deliveries, sessions)

    [event] = events_of(sessions, job_id)
    assert event.status == WebhookStatus.DELIVERED
    first, second = event.attempt_log
    assert (first.status_code, first.error) == (None, "no answer within 0.5 s")
    assert 400 <= first.duration_ms < 2000
    assert second.status_code == 200
    assert len(receiver.received()) == 2


def test_a_redirect_is_not_followed(sessions, receiver, deliveries, user):
    receiver.answer(302)
    job_id = make_job(sessions, user[0], receiver.url)
    complete(sessions, job_id)

    assert deliveries.deliver_one() is True
    [event] = events_of(sessions, job_id)
    assert event.status == WebhookStatus.PENDING and event.next_attempt_at is not None
    assert [(a.status_code, a.error) for a in event.attempt_log] == [(302, "redirect not followed")]
    deliver_until_settled(deliveries, sessions)

    assert [r.path for r in receiver.requests] == ["/hook", "/hook"]  # never /elsewhere
    assert events_of(sessions, job_id)[0].status == WebhookStatus.DELIVERED


def test_an_event_is_failed_once_the_retry_window_is_over(sessions, receiver, deliveries, user):
    receiver.answer(503, 503)
    job_id = make_job(sessions, user[0], receiver.url)
    complete(sessions, job_id)
    with session_scope(sessions) as session:
        session.execute(update(WebhookEvent).values(created_at=utcnow() - timedelta(hours=24, minutes=1)))

    assert deliveries.deliver_one() is True
    assert deliveries.deliver_one() is False

    [event] = events_of(sessions, job_id)
    assert (event.status, event.attempts, event.next_attempt_at) == (WebhookStatus.FAILED, 1, None)
    assert [a.status_code for a in event.attempt_log] == [503]
    assert len(receiver.received()) == 1


def test_an_address_the_guard_refuses_is_not_dialled(sessions, settings, receiver, user):
    deliveries = sender(sessions, settings, webhook_allow_private=False)
    job_id = make_job(sessions, user[0], receiver.url)
    complete(sessions, job_id)

    assert deliveries.deliver_one() is True

    [event] = events_of(sessions, job_id)
    assert event.status == WebhookStatus.PENDING  # retried: the address may change
    [attempt] = event.attempt_log
    assert attempt.status_code is None and attempt.error.startswith("refused: ")
    assert receiver.requests == []


def test_a_user_without_a_secret_gets_one_made_when_first_needed(sessions, receiver, deliveries):
    user_id, _ = create_user(sessions)
    job_id = make_job(sessions, user_id, receiver.url)
    complete(sessions, job_id)

    deliver_until_settled(deliveries, sessions)

    with session_scope(sessions) as session:
        secret = session.get(User, user_id).webhook_secret
    assert secret and secret.startswith("whsec_")
    verify(receiver.received()[0], secret)


def test_a_rotated_secret_signs_the_next_attempt(sessions, receiver, deliveries, user):
    user_id, old = user
    receiver.answer(500)
    job_id = make_job(sessions, user_id, receiver.url)
    complete(sessions, job_id)
    assert deliveries.deliver_one() is True
    with session_scope(sessions) as session:
        new = WebhookSettings(session).rotate_secret(session.get(User, user_id))

    deliver_until_settled(deliveries, sessions)

    first, second = receiver.received()
    verify(first, old)
    verify(second, new)
    with pytest.raises(WebhookVerificationError):
        verify(second, old)


def test_two_senders_send_each_event_once(sessions, settings, receiver):
    # Four users: one user's events go one at a time, so both senders have work at once.
    users = [create_user(sessions)[0] for _ in range(4)]
    jobs = [make_job(sessions, users[n % 4], receiver.url) for n in range(8)]
    for job_id in jobs:
        complete(sessions, job_id)
        receiver.delay_next(0.05)  # hold each request, so that both senders are busy at once
    senders = [sender(sessions, settings) for _ in range(2)]
    for s in senders:
        s.start()
    deadline = time.monotonic() + 20
    while pending(sessions) and time.monotonic() < deadline:
        time.sleep(0.05)
    for s in senders:
        s.stop()

    ids = [r.headers["webhook-id"] for r in receiver.received()]
    assert len(ids) == len(set(ids)) == 8
    events = [e for job_id in jobs for e in events_of(sessions, job_id)]
    assert {(e.status, e.attempts) for e in events} == {(WebhookStatus.DELIVERED, 1)}
    assert not any(s.is_alive() for s in senders)
    assert all(s.sent > 0 for s in senders), [s.sent for s in senders]  # both took part


def test_a_sender_whose_lease_ran_out_records_nothing(sessions, user):
    job_id = make_job(sessions, user[0], "http://127.0.0.1:9/hook")
    complete(sessions, job_id)
    now = utcnow()
    with session_scope(sessions) as session:
        slow = WebhookRepository(session).claim_next(now, now + timedelta(milliseconds=1))
    later = now + timedelta(seconds=1)
    with session_scope(sessions) as session:
        assert WebhookRepository(session).claim_next(later, later + timedelta(minutes=1)) is not None
    with session_scope(sessions) as session:
        assert WebhookRepository(session).claim_next(later, later + timedelta(minutes=1)) is None
        attempt = WebhookAttempt(
            event_id=slow.event_id, number=1, started_at=now, status_code=200, duration_ms=5
        )
        assert WebhookRepository(session).settle(slow, attempt, WebhookStatus.DELIVERED) is False
    [event] = events_of(sessions, job_id)
    assert (event.status, event.attempt_log) == (WebhookStatus.PENDING, [])


def claim(sessions, now=None):
    now = now or utcnow()
    with session_scope(sessions) as session:
        return WebhookRepository(session).claim_next(now, now + timedelta(minutes=1))


def test_a_user_has_one_event_leased_at_a_time(sessions, user):
    """A slow endpoint owed many events holds one sender: the next claim goes to another user."""
    slow = [make_job(sessions, user[0], "http://127.0.0.1:9/slow") for _ in range(3)]
    for job_id in slow:
        complete(sessions, job_id)
    other_user, _ = create_user(sessions)
    other = make_job(sessions, other_user, "http://127.0.0.1:9/prompt")
    complete(sessions, other)  # due last: the slow user's three are more overdue

    first, second = claim(sessions), claim(sessions)
    assert (first.user_id, second.user_id) == (user[0], other_user)
    assert claim(sessions) is None  # the slow user's other two wait for the first to settle

    attempt = WebhookAttempt(event_id=first.event_id, number=1, started_at=utcnow(), duration_ms=10_000)
    with session_scope(sessions) as session:
        assert WebhookRepository(session).settle(first, attempt, WebhookStatus.PENDING, utcnow())
    third = claim(sessions)
    assert third.user_id == user[0] and third.event_id != first.event_id
    assert claim(sessions) is None
    # A lease that ran out (its sender died) no longer holds the user.
    assert claim(sessions, utcnow() + timedelta(minutes=2)).user_id == user[0]


@pytest.mark.parametrize("stack", [pytest.param("real", marks=pytest.mark.integration)])
def test_two_senders_claiming_at_once_lease_one_event_per_user(sessions, user):
    """Neither claim sees the other's lease before it commits: the user's row is the lock."""
    for _ in range(2):
        complete(sessions, make_job(sessions, user[0], "http://127.0.0.1:9/slow"))
    other_user, _ = create_user(sessions)
    complete(sessions, make_job(sessions, other_user, "http://127.0.0.1:9/prompt"))
    now = utcnow()
    with sessions() as first, sessions() as second:
        second.execute(text("SET LOCAL lock_timeout = '2s'"))  # a claim that waits fails instead
        taken = WebhookRepository(first).claim_next(now, now + timedelta(minutes=1))
        meanwhile = WebhookRepository(second).claim_next(now, now + timedelta(minutes=1))
        first.commit()
        second.commit()
    assert (taken.user_id, meanwhile.user_id) == (user[0], other_user)
    assert claim(sessions) is None


def test_deleting_the_job_deletes_its_events(sessions, receiver, deliveries, user):
    job_id = make_job(sessions, user[0], receiver.url)
    complete(sessions, job_id)
    deliver_until_settled(deliveries, sessions)
    with session_scope(sessions) as session:
        jobs = JobRepository(session)
        jobs.delete(jobs.get(job_id))
    with session_scope(sessions) as session:
        assert session.execute(select(WebhookEvent)).all() == []
        assert session.execute(select(WebhookAttempt)).all() == []
        assert session.get(Job, job_id) is None


def test_a_merge_racing_another_completes_the_job_once(sessions, user):
    """Two merges of one job, each with the job loaded before either writes: one event."""
    job_id = make_job(sessions, user[0], "http://127.0.0.1:9/hook")
    results = []
    barrier = threading.Barrier(2)

    def merge():
        with session_scope(sessions) as session:
            jobs = JobRepository(session)
            job = jobs.get(job_id)
            barrier.wait()
            results.append(jobs.complete(job, text=TRANSCRIPT, detected_language="en"))

    threads = [threading.Thread(target=merge) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert sorted(results) == [False, True]
    assert [e.type for e in events_of(sessions, job_id)] == ["job.completed"]


def test_a_worker_process_delivers_the_events_of_its_jobs(sessions, worker_ctx, receiver, user):
    """`python -m worker.main --burst` runs the job and, before it exits, sends the due webhook."""
    user_id, secret = user
    job_id = submit_file(worker_ctx, user_id, speech("jfk/jfk.flac"))
    with session_scope(sessions) as session:
        session.execute(update(Job).where(Job.id == job_id).values(webhook_url=receiver.url))

    assert serve(worker_ctx, parse_args(["--burst"])) == 0

    [request] = receiver.received()
    payload = verify(request, secret)
    assert (payload["type"], payload["job"]["id"]) == ("job.completed", job_id)
    assert [e.status for e in events_of(sessions, job_id)] == [WebhookStatus.DELIVERED]
