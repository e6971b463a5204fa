"""An account's limits at submission: active-job slots (held by reservations while audio is still on
its way) and the tier's monthly minutes and per-file length."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from core.errors import Invalid, PaymentRequired, TooManyRequests
from core.tiers import TierPolicy, month_start, policy_for
from repositories.jobs import JobRepository
from repositories.models import User
from repositories.reservations import ReservationRepository
from repositories.users import UserRepository

# What a client told "too many active jobs" should wait before trying again.
ACTIVE_RETRY_AFTER_SECONDS = 30
# How long a submission's reservation holds its slot: a request that died without releasing it
# stops blocking its user's next submissions then. (An upload still streaming after that is
# checked again, exactly, when its job is created.)
RESERVATION_SECONDS = 3600


@dataclass(frozen=True)
class Usage:
    month: str
    seconds_used: float
    active_jobs: int
    policy: TierPolicy
    # Submissions whose audio is still on its way: each holds one of the active jobs' slots.
    uploads_in_flight: int = 0

    @property
    def seconds_left(self) -> float:
        return self.policy.seconds_left(self.seconds_used)


def usage(session: Session, user: User) -> Usage:
    jobs, start = JobRepository(session), month_start()
    return Usage(
        month=start.strftime("%Y-%m"),
        seconds_used=jobs.billed_seconds(user.id, start),
        active_jobs=jobs.count_active(user.id),
        policy=policy_for(user.tier),
        uploads_in_flight=ReservationRepository(session).count_live(user.id, datetime.now(UTC)),
    )


def check_can_submit(session: Session, user: User) -> Usage:
    """Refuse new work before any byte is read: too many active jobs (429), quota spent (402).

    A read, so two requests may both pass it: `reserve_submission` and `admit` are the exact checks."""
    current = usage(session, user)
    taken = current.active_jobs + current.uploads_in_flight
    if taken >= current.policy.max_active_jobs:
        uploading = f" ({current.uploads_in_flight} of them uploading)" if current.uploads_in_flight else ""
        raise TooManyRequests(
            f"you have {taken} active jobs{uploading}; the {user.tier.value} tier allows "
            f"{current.policy.max_active_jobs} at a time",
            retry_after=ACTIVE_RETRY_AFTER_SECONDS,
        )
    if current.seconds_left <= 0:
        minutes, tier = current.policy.monthly_minutes, user.tier.value
        raise PaymentRequired(f"this month's {minutes} audio minutes of the {tier} tier are used up")
    return current


def reserve_submission(session: Session, user: User) -> str:
    """Take one of the user's active-job slots for a submission whose audio is still to come, or
    refuse (429, 402). Returns the reservation's id; the caller commits it before reading the body.

    The user's row is locked first, so of concurrent submissions exactly as many as there are free
    slots get one."""
    UserRepository(session).lock(user.id)
    reservations, now = ReservationRepository(session), datetime.now(UTC)
    reservations.drop_expired(user.id, now)
    check_can_submit(session, user)
    return reservations.take(user.id, now + timedelta(seconds=RESERVATION_SECONDS)).id


def release_reservation(session: Session, reservation_id: str) -> None:
    ReservationRepository(session).release(reservation_id)


def admit(session: Session, user: User, reservation_id: str, duration: float | None) -> None:
    """In the transaction that creates the job: the job takes the reservation's place, and the
    limits are checked again under the user's lock, the monthly minutes now with the audio's
    duration where it is known (concurrent submissions cannot together pass the quota)."""
    UserRepository(session).lock(user.id)
    release_reservation(session, reservation_id)
    check_duration(check_can_submit(session, user), duration, user.tier.value)


def check_duration(current: Usage, duration: float | None, tier: str) -> None:
    """When the container states its duration, enforce the tier's limits now (else `prepare` will)."""
    if duration is None:
        return
    if duration > current.policy.max_duration_minutes * 60:
        raise Invalid(duration_message(duration, current.policy.max_duration_minutes, tier))
    if duration > current.seconds_left:
        raise PaymentRequired(
            f"the audio is {duration / 60:.1f} min long but only {current.seconds_left / 60:.1f} "
            f"of this month's audio minutes are left"
        )


def duration_message(duration: float, max_minutes: int, tier: str) -> str:
    return (
        f"the audio is {duration / 60:.1f} min long; the {tier} tier allows up to {max_minutes} min per file"
    )
