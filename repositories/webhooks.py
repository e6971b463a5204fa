"""The webhook outbox: events written with the job's status change, claimed and settled by senders.

Every change a sender makes to an event is fenced by its lease (`claimed_until`, a timestamp unique
to one claim): a sender whose lease ran out while it waited on a slow endpoint records nothing, so
the event is never settled twice.

A user has at most one event leased at a time, so that a slow endpoint, however many events it is
owed, holds one sender while the others deliver to everyone else.
"""

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, or_, select, update
from sqlalchemy.orm import Session, aliased, selectinload

from core.enums import JobStatus
from repositories.base import Repository
from repositories.models import Job, User, WebhookAttempt, WebhookEvent, WebhookStatus, utcnow

EVENT_TYPES = {JobStatus.COMPLETED: "job.completed", JobStatus.FAILED: "job.failed"}
SECRET_PREFIX = "whsec_"  # noqa: S105 (a format prefix, not a secret)


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def new_event_id() -> str:
    return f"msg_{secrets.token_hex(16)}"


def record_job_event(session: Session, job: Job) -> WebhookEvent | None:
    """Queue the webhook of a job that just completed or failed, in the caller's transaction.

    Sent to the job's own `webhook_url`, else to its owner's default; nothing if neither is set.
    """
    event_type = EVENT_TYPES.get(job.status)
    url = (
        job.webhook_url
        or session.execute(select(User.webhook_url).where(User.id == job.user_id)).scalar_one_or_none()
    )
    if event_type is None or not url:
        return None
    now = utcnow()
    event = WebhookEvent(
        id=new_event_id(),
        job_id=job.id,
        user_id=job.user_id,
        url=url,
        type=event_type,
        payload=event_payload(job, event_type, now),
        status=WebhookStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(event)
    session.flush()
    return event


def event_payload(job: Job, event_type: str, now: datetime) -> dict[str, Any]:
    """What the receiver learns about the job: never the audio, nor the transcript's text."""
    return {
        "type": event_type,
        "timestamp": now.isoformat(),
        "job": {
            "id": job.id,
            "status": job.status.value,
            "filename": job.filename,
            "language": job.language or job.detected_language,
            "audio_duration_seconds": job.audio_duration_seconds,
            "error": job.error,
            "created_at": job.created_at.isoformat(),
            "completed_at": job.completed_at.isoformat() if job.completed_at else None,
        },
    }


@dataclass(frozen=True)
class Claim:
    """One attempt a sender is entitled to make, until `lease`."""

    event_id: str
    user_id: str
    url: str
    payload: dict[str, Any]
    attempt: int
    created_at: datetime
    lease: datetime
    secret: str = field(repr=False)


class WebhookRepository(Repository[WebhookEvent]):
    model = WebhookEvent

    def list_for_job(self, job_id: str) -> Sequence[WebhookEvent]:
        stmt = (
            select(WebhookEvent)
            .where(WebhookEvent.job_id == job_id)
            .options(selectinload(WebhookEvent.attempt_log))
            .order_by(WebhookEvent.created_at, WebhookEvent.id)
        )
        return self.session.execute(stmt).scalars().all()

    def claim_next(self, now: datetime, lease: datetime) -> Claim | None:
        """Lease the most overdue pending event of a user with no event leased, or None.

        A conditional UPDATE takes the lease, so two senders never hold the same event at once.
        Two senders claiming two events of one user at the same moment would each see the other's
        lease only once committed, so a claim first locks the user's row (PostgreSQL; SQLite
        writes one transaction at a time anyway), skipping a user another claim has locked.
        """
        stmt = (
            select(WebhookEvent.id, WebhookEvent.user_id)
            .where(*_claimable(now))
            .order_by(WebhookEvent.next_attempt_at)
            .limit(5)  # a few candidates: another sender may take the first one meanwhile
        )
        for event_id, user_id in self.session.execute(stmt).all():
            if not self._lock_user(user_id):
                continue
            taken = self.session.execute(
                update(WebhookEvent)
                .where(WebhookEvent.id == event_id, *_claimable(now))
                .values(claimed_until=lease)
                .execution_options(synchronize_session=False)
            )
            if getattr(taken, "rowcount", 0) == 1:
                return self._claim(event_id, lease)
        return None

    def _lock_user(self, user_id: str) -> bool:
        """Lock the user's row for this transaction; False if another transaction holds it."""
        stmt = select(User.id).where(User.id == user_id).with_for_update(skip_locked=True)
        return self.session.execute(stmt).scalar_one_or_none() is not None

    def _claim(self, event_id: str, lease: datetime) -> Claim:
        event = self.session.execute(
            select(WebhookEvent).where(WebhookEvent.id == event_id).execution_options(populate_existing=True)
        ).scalar_one()
        return Claim(
            event_id=event.id,
            user_id=event.user_id,
            url=event.url,
            payload=event.payload,
            attempt=event.attempts + 1,
            created_at=event.created_at,
            lease=lease,
            secret=self.signing_secret(event.user_id),
        )

    def signing_secret(self, user_id: str) -> str:
        """The owner's secret, made now if they never asked for one (they get it by rotating)."""
        self.session.execute(
            update(User)
            .where(User.id == user_id, User.webhook_secret.is_(None))
            .values(webhook_secret=new_secret())
            .execution_options(synchronize_session=False)
        )
        secret = self.session.execute(select(User.webhook_secret).where(User.id == user_id)).scalar_one()
        return str(secret)

    def settle(
        self,
        claim: Claim,
        attempt: WebhookAttempt,
        status: WebhookStatus,
        next_attempt_at: datetime | None = None,
    ) -> bool:
        """Record one attempt and the event's new state. False (nothing written) if the lease was lost."""
        done = status != WebhookStatus.PENDING
        result = self.session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == claim.event_id, WebhookEvent.claimed_until == claim.lease)
            .values(
                status=status,
                attempts=claim.attempt,
                next_attempt_at=None if done else next_attempt_at,
                claimed_until=None,
                delivered_at=attempt.started_at if status == WebhookStatus.DELIVERED else None,
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            return False
        self.session.add(attempt)
        self.session.flush()
        return True

    def disable_endpoint(self, user_id: str, url: str) -> None:
        """After a 410 Gone: drop the user's other pending events to `url`, and the user's default
        endpoint if it is that URL. A job submitted later with this URL names it again, and is sent.
        """
        self.session.execute(
            update(WebhookEvent)
            .where(
                WebhookEvent.user_id == user_id,
                WebhookEvent.url == url,
                WebhookEvent.status == WebhookStatus.PENDING,
                WebhookEvent.claimed_until.is_(None),
            )
            .values(status=WebhookStatus.DISABLED, next_attempt_at=None)
            .execution_options(synchronize_session=False)
        )
        self.session.execute(
            update(User)
            .where(User.id == user_id, User.webhook_url == url)
            .values(webhook_url=None)
            .execution_options(synchronize_session=False)
        )


def _claimable(now: datetime) -> tuple[ColumnElement[bool], ...]:
    leased = aliased(WebhookEvent)
    return (
        WebhookEvent.status == WebhookStatus.PENDING,
        WebhookEvent.next_attempt_at <= now,
        or_(WebhookEvent.claimed_until.is_(None), WebhookEvent.claimed_until < now),
        # One attempt in flight per user (see the module docstring).
        ~exists().where(leased.user_id == WebhookEvent.user_id, leased.claimed_until >= now),
    )


class WebhookSettings:
    """A user's webhook endpoint and signing secret."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def rotate_secret(self, user: User) -> str:
        """A new secret; attempts from now on are signed with it, the old one is forgotten."""
        user.webhook_secret = new_secret()
        self.session.flush()
        return user.webhook_secret

    def set_default_url(self, user: User, url: str | None) -> None:
        user.webhook_url = url
        self.session.flush()
