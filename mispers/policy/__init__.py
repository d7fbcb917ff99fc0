"""Force policy as data: every deadline, floor, threshold and escalation interval."""

from mispers.policy.loader import PolicyError, load_policy
from mispers.policy.model import PinnedPolicy, Policy

__all__ = ["PinnedPolicy", "Policy", "PolicyError", "load_policy", "pinned_policy"]


def pinned_policy(policy_path: str | None, time_scale: float) -> PinnedPolicy:
    """The policy in force for new episodes (MISPERS_POLICY, MISPERS_TIME_SCALE)."""
    return PinnedPolicy.pin(load_policy(policy_path), time_scale)
