"""The tier policy table: what each paid tier may use, and how soon its work runs."""

from dataclasses import dataclass
from datetime import UTC, datetime

from core.enums import Backend, Priority, Tier
from core.errors import Forbidden


@dataclass(frozen=True)
class TierPolicy:
    max_priority: Priority
    max_upload_mb: int
    max_duration_minutes: int
    max_active_jobs: int
    monthly_minutes: int
    # Backends a job of this tier may ask for by name (the fleet default is always allowed).
    backends: tuple[Backend, ...] = (Backend.LOCAL,)

    @property
    def default_priority(self) -> Priority:
        return self.max_priority

    def seconds_left(self, seconds_used: float) -> float:
        """The audio seconds left of the month's minutes, after `seconds_used` billed this month."""
        return max(0.0, self.monthly_minutes * 60 - seconds_used)


def month_start(now: datetime | None = None) -> datetime:
    """Where the month whose minutes the quota counts began (UTC)."""
    now = now or datetime.now(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


POLICIES: dict[Tier, TierPolicy] = {
    Tier.FREE: TierPolicy(
        max_priority=Priority.LOW,
        max_upload_mb=100,
        max_duration_minutes=30,
        max_active_jobs=2,
        monthly_minutes=120,
    ),
    Tier.PRO: TierPolicy(
        max_priority=Priority.NORMAL,
        max_upload_mb=1024,
        max_duration_minutes=4 * 60,
        max_active_jobs=10,
        monthly_minutes=3_000,
        backends=(Backend.LOCAL, Backend.ASSEMBLYAI),
    ),
    Tier.ENTERPRISE: TierPolicy(
        max_priority=Priority.HIGH,
        max_upload_mb=4096,
        max_duration_minutes=12 * 60,
        max_active_jobs=100,
        monthly_minutes=100_000,
        backends=(Backend.LOCAL, Backend.ASSEMBLYAI),
    ),
}


def policy_for(tier: Tier) -> TierPolicy:
    return POLICIES[tier]


def resolve_priority(tier: Tier, requested: Priority | None) -> Priority:
    """The priority a job runs at: the tier's default, or what was asked if the tier allows it."""
    policy = policy_for(tier)
    if requested is None:
        return policy.default_priority
    if requested.rank > policy.max_priority.rank:
        raise Forbidden(f"the {tier.value} tier may use priority up to '{policy.max_priority.value}'")
    return requested


def resolve_backend(tier: Tier, requested: Backend | None) -> Backend | None:
    """The backend a job asks for by name, if its tier allows it; None leaves it to the fleet."""
    if requested is None:
        return None
    allowed = policy_for(tier).backends
    if requested not in allowed:
        names = ", ".join(b.value for b in allowed)
        raise Forbidden(f"the {tier.value} tier may choose the backend {names}; not '{requested.value}'")
    return requested
