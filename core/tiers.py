"""Tier policy: what each paid tier may use."""

from dataclasses import dataclass

from core.enums import Priority, Tier
from core.errors import Forbidden


@dataclass(frozen=True)
class TierPolicy:
    max_priority: Priority
    default_priority: Priority


POLICIES: dict[Tier, TierPolicy] = {
    Tier.FREE: TierPolicy(max_priority=Priority.LOW, default_priority=Priority.LOW),
    Tier.PRO: TierPolicy(max_priority=Priority.NORMAL, default_priority=Priority.NORMAL),
    Tier.ENTERPRISE: TierPolicy(max_priority=Priority.HIGH, default_priority=Priority.HIGH),
}


def resolve_priority(tier: Tier, requested: Priority | None) -> Priority:
    """The priority a job runs at: the tier's default, or what was asked if the tier allows it."""
    policy = POLICIES[tier]
    if requested is None:
        return policy.default_priority
    if requested.rank > policy.max_priority.rank:
        raise Forbidden(f"the {tier.value} tier may use priority up to '{policy.max_priority.value}'")
    return requested
