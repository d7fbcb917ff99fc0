"""Who may post what: the role and rank of the token that sent an event, judged against the event.

Authority is taken from the token, never from the event's data: a rank written in `risk.assessed`
or `closure.approved` is believed only up to the rank of the token that posted it, because
reviews are met by that rank and inspection findings were about supervisors' decisions nobody
could trace. The force's own records system (`system` role) vouches for its users, so it may
post any rank it was given.

These rules run inside the episode's Update validator (`check_event`), against the same state
the write will see, so no concurrent change can pass between a check and the write.
"""

from __future__ import annotations

from collections.abc import Mapping

from mispers.domain.events import Actor, ClosureApproved, EventBase, RiskAssessed
from mispers.domain.refusals import AUTHORITY, EventRefused, Refusal
from mispers.domain.state import EpisodeState
from mispers.domain.types import Rank, Role

# Seniority, lowest first (the escalation order in a policy may differ; seniority does not).
RANK_ORDER: tuple[Rank, ...] = (Rank.OFFICER, Rank.SERGEANT, Rank.INSPECTOR, Rank.SUPERINTENDENT)

# The rank a token of each role carries when none is given; `None`: the role carries no rank.
DEFAULT_RANK: Mapping[Role, Rank | None] = {
    Role.OFFICER: Rank.OFFICER,
    Role.SUPERVISOR: Rank.SERGEANT,
    Role.SYSTEM: None,
    Role.AUDITOR: None,
}

# Decisions only a supervisor takes (closure approval, and with it waivers).
SUPERVISOR_ONLY = frozenset({"mispers.closure.approved"})


class RankError(ValueError):
    """A role and rank that cannot go together on a token; the message says why."""


def token_rank(role: Role, rank: Rank | None) -> Rank | None:
    """The rank a token of `role` carries: the one given, else the role's default. A `system`
    or `auditor` token carries none; a supervisor is a sergeant or above."""
    if DEFAULT_RANK[role] is None:
        if rank is not None:
            raise RankError(f"a {role.value} token carries no rank")
        return None
    chosen = rank or DEFAULT_RANK[role]
    assert chosen is not None
    if role is Role.SUPERVISOR and seniority(chosen) < seniority(Rank.SERGEANT):
        raise RankError("a supervisor token carries the rank of sergeant or above")
    return chosen


def seniority(rank: Rank) -> int:
    return RANK_ORDER.index(rank)


def actor_rank(actor: Actor) -> Rank | None:
    """The rank the actor's token vouches for (a token minted before ranks: its role's default)."""
    return actor.rank or DEFAULT_RANK[actor.role]


def claimed_rank(event: EventBase) -> Rank | None:
    """The rank the event's data says its author holds, where the contract has one."""
    if isinstance(event, RiskAssessed | ClosureApproved):
        return event.data.rank
    return None


def is_supervisor(event: EventBase) -> bool:
    """A supervisor's decision needs a supervisor's token; an event with no actor is nobody's."""
    return event.actor is not None and event.actor.role is Role.SUPERVISOR


def check_authority(state: EpisodeState, event: EventBase) -> None:
    """Raise `EventRefused` (kind `authority`, answered 403) if the token that posted the event
    may not post it against this state. Never changes the state."""
    actor = event.actor
    if actor is None:
        raise _refuse(
            "no_actor",
            "the event carries no actor: events are recorded only with the token that posted them",
        )
    if actor.role is Role.AUDITOR:
        raise _refuse("auditor_reads_only", "an auditor's token reads; it posts no events")
    event_type = getattr(event, "type", "")
    if event_type in SUPERVISOR_ONLY and actor.role is not Role.SUPERVISOR:
        raise _refuse(
            "supervisor_only",
            f"{event_type} is a supervisor decision; role '{actor.role.value}' may not send it",
            required_role=Role.SUPERVISOR.value,
        )
    claimed = claimed_rank(event)
    held = actor_rank(actor)
    if claimed is not None and held is not None and seniority(claimed) > seniority(held):
        raise _refuse(
            "rank_above_token",
            f"the event claims the rank {claimed.value} but the token that posted it holds "
            f"{held.value}: a rank in an event may not exceed its sender's",
            claimed_rank=claimed.value,
            token_rank=held.value,
        )
    if isinstance(event, RiskAssessed) and state.risk is not None:
        current, new = state.risk.level, event.data.level
        if new < current and actor.role is not Role.SUPERVISOR:
            raise _refuse(
                "downgrade_needs_supervisor",
                f"lowering the risk from {current.value} to {new.value} needs the supervisor "
                f"role; role '{actor.role.value}' may only raise or keep it",
                required_role=Role.SUPERVISOR.value,
                current=current.value,
                requested=new.value,
            )


def _refuse(code: str, message: str, **details: object) -> EventRefused:
    return EventRefused(Refusal(code=code, message=message, details=details, kind=AUTHORITY))
