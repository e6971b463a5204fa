"""A webhook tarpit against a real worker process: an endpoint that answers one byte a second holds
one delivery loop until the attempt's deadline, and never another user's webhook."""

import itertools
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from core.db import make_engine, make_session_factory, session_scope
from core.enums import JobStatus, Priority
from repositories.jobs import JobRepository
from repositories.models import WebhookEvent, WebhookStatus
from tests.conftest import create_user
from tests.e2e.fleet import Fleet
from tests.e2e.support import wait_until
from tests.fakes.tarpit import Connection, tarpit
from tests.fakes.webhook_receiver import webhook_receiver

pytestmark = pytest.mark.e2e

DEADLINE_SECONDS = 3
SENDERS = 2
# More than the senders: without the one-attempt-per-user rule they would all be on the tarpit.
TARPIT_EVENTS = 2 * SENDERS


@pytest.fixture(scope="module")
def webhook_worker(fleet: Fleet) -> Fleet:
    """One worker process that may post to loopback, with small attempt deadlines."""
    fleet.use_workers(
        1,
        VERBATIM_WEBHOOK_ALLOW_PRIVATE="true",
        VERBATIM_WEBHOOK_TIMEOUT_SECONDS=str(DEADLINE_SECONDS),
        VERBATIM_WEBHOOK_SENDERS=str(SENDERS),
    )
    return fleet


@pytest.fixture
def sessions(fleet: Fleet) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(fleet.database_url)
    yield make_session_factory(engine)
    engine.dispose()


def finish_jobs(session: Session, user_id: str, url: str, count: int) -> None:
    """`count` jobs of the user completed, each with its webhook to `url` queued."""
    jobs = JobRepository(session)
    for _ in range(count):
        job = jobs.create(
            id=str(uuid.uuid4()),
            user_id=user_id,
            priority=Priority.NORMAL,
            status=JobStatus.PROCESSING,
            filename="meeting.flac",
            size_bytes=1000,
            source_key="jobs/none/source.flac",
            webhook_url=url,
        )
        assert jobs.complete(job, text="hello", detected_language="en")


def events_of(sessions: sessionmaker[Session], user_id: str) -> list[WebhookEvent]:
    stmt = (
        select(WebhookEvent)
        .where(WebhookEvent.user_id == user_id)
        .options(selectinload(WebhookEvent.attempt_log))
        .order_by(WebhookEvent.created_at)
    )
    with session_scope(sessions) as session:
        return list(session.execute(stmt).scalars())


def overlapping(connections: list[Connection]) -> bool:
    spans = sorted((c.opened_at, c.closed_at or float("inf")) for c in connections)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def test_a_tarpit_endpoint_is_abandoned_at_its_deadline_while_another_user_is_served(
    webhook_worker: Fleet, sessions: sessionmaker[Session]
) -> None:
    slow_user, _ = create_user(sessions)
    other_user, _ = create_user(sessions)
    with tarpit(interval=1.0) as pit, webhook_receiver() as receiver:
        with session_scope(sessions) as session:
            # The tarpit's events are the more overdue: a sender takes them first.
            finish_jobs(session, slow_user, pit.url, TARPIT_EVENTS)
            finish_jobs(session, other_user, receiver.url, 1)
        due_at = time.monotonic()

        wait_until(receiver.received, 10, "the other user's webhook", interval=0.05)
        delivered_after = time.monotonic() - due_at
        hung_up = wait_until(pit.closed, 3 * DEADLINE_SECONDS, "the tarpit to be hung up on")
        attempts = wait_until(
            lambda: [a for e in events_of(sessions, slow_user) for a in e.attempt_log],
            5,
            "the tarpit attempt to be recorded",
        )
        connections = list(pit.connections)

    assert delivered_after < 5, delivered_after
    [delivered] = events_of(sessions, other_user)
    assert (delivered.status, delivered.attempts) == (WebhookStatus.DELIVERED, 1)

    for connection in hung_up:
        assert connection.sent >= DEADLINE_SECONDS - 1  # still trickling when the sender left
        held = connection.closed_at - connection.opened_at
        assert DEADLINE_SECONDS - 0.5 <= held < DEADLINE_SECONDS + 1.5, held
    for attempt in attempts:
        assert (attempt.status_code, attempt.error) == (None, f"no answer within {DEADLINE_SECONDS} s")
        assert DEADLINE_SECONDS * 1000 <= attempt.duration_ms < (DEADLINE_SECONDS + 1.5) * 1000
    assert {e.status for e in events_of(sessions, slow_user)} == {WebhookStatus.PENDING}
    assert not overlapping(connections)  # the tarpit's events went one at a time
