"""The tier policy table: what each paid tier may use, and how soon its work runs."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from core.enums import Backend, Priority, Tier
from core.errors import Forbidden, Invalid


@dataclass(frozen=True)
class TierPolicy:
    max_priority: Priority
    max_upload_mb: int
    max_duration_minutes: int
    max_active_jobs: int
    monthly_minutes: int
    # Backends a job of this tier may ask for by name (the fleet default is always allowed).
    backends: tuple[Backend, ...] = (Backend.LOCAL,)
    # Models (names of `Settings.models`) a job of this tier may ask for besides the fleet's
    # default, which is always allowed; None: every model the fleet offers.
    models: tuple[str, ...] | None = None

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
        models=(),  # the fleet's default model only
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


def allowed_models(tier: Tier, offered: Iterable[str], default: str) -> list[str]:
    """The models of the fleet's allow-list (`offered`, in its order) that `tier` may use."""
    extra = policy_for(tier).models
    return [name for name in offered if name == default or extra is None or name in extra]


def resolve_model(tier: Tier, requested: str | None, offered: Iterable[str], default: str) -> str:
    """The model a job runs with: the fleet's default, or the one asked for if the fleet offers it
    (422 naming those the tier may use) and the tier allows it (403)."""
    if requested is None:
        return default
    offered = list(offered)
    allowed = allowed_models(tier, offered, default)
    if requested not in offered:
        raise Invalid(f"unknown model '{requested}': use {', '.join(allowed)}")
    if requested not in allowed:
        names = ", ".join(allowed)
        raise Forbidden(f"the {tier.value} tier may use the model {names}; not '{requested}'")
    return requested
