"""The escalation ladder [D]: an obligation past its deadline alerts the rank above its owner,
then one rank further each escalation interval, re-alerting the top rank until met or waived."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from mispers.domain.state import Alert, Obligation
from mispers.domain.types import ObligationStatus, Rank, RiskLevel

# A safety bound: with the catch-up jump below, one tick raises at most one alert per rank.
MAX_ALERTS_PER_TICK = 64


def alert_rank(ranks: Sequence[Rank], owner: Rank, level: int) -> Rank:
    """Level 1 goes to the next rank up from the owner; the top rank absorbs the rest."""
    return _rank_at(ranks, _owner_index(ranks, owner), level)


def _owner_index(ranks: Sequence[Rank], owner: Rank) -> int:
    return ranks.index(owner) if owner in ranks else 0


def _rank_at(ranks: Sequence[Rank], start: int, level: int) -> Rank:
    return ranks[min(start + level, len(ranks) - 1)]


def alert_id(episode_id: str, obligation_id: str, level: int) -> str:
    """Stable for an episode, obligation and level, so receivers can drop repeats."""
    return f"{episode_id}:{obligation_id}:L{level}"


def escalate(
    obligation: Obligation,
    *,
    episode_id: str,
    now: dt.datetime,
    interval: dt.timedelta,
    ranks: Sequence[Rank],
    risk_level: RiskLevel | None = None,
) -> list[Alert]:
    """Raise every alert that has fallen due for this obligation by `now`, in order, each
    carrying `risk_level` (the episode's grade, for an episode whose alerts have a lifecycle)."""
    if not obligation.outstanding or obligation.next_escalation_at is None:
        return []
    # Asked at every timer of every episode, re-alerts of the top rank being most of them: the
    # obligation's figures are worked on as locals and written back once.
    raised: list[Alert] = []
    top = ranks[-1]
    start = _owner_index(ranks, obligation.owner)
    level = obligation.escalation_level
    next_at = obligation.next_escalation_at
    while next_at <= now:
        if level > 0 and _rank_at(ranks, start, level) == top:
            # Re-alerts of the top rank missed while nobody was watching (a worker outage, a
            # late event) collapse into one: jump to the latest interval boundary.
            next_at += interval * ((now - next_at) // interval)
        level += 1
        raised.append(
            Alert(
                alert_id=alert_id(episode_id, obligation.id, level),
                episode_id=episode_id,
                obligation_id=obligation.id,
                kind=obligation.kind,
                due_at=obligation.due_at,
                escalation_level=level,
                rank=_rank_at(ranks, start, level),
                raised_at=now,
                scheduled_at=next_at,
                risk_level=risk_level,
            )
        )
        next_at += interval
        if len(raised) >= MAX_ALERTS_PER_TICK:
            break
    if raised:
        obligation.assign(escalation_level=level, next_escalation_at=next_at)
        if obligation.status is not ObligationStatus.OVERDUE:
            obligation.status = ObligationStatus.OVERDUE
    return raised


def next_escalation_after_deadline_change(
    obligation: Obligation, new_due: dt.datetime, now: dt.datetime, interval: dt.timedelta
) -> None:
    """Raising risk brings a deadline forward: escalation restarts from the earlier deadline.
    Never delays: a deadline or escalation already due stays due."""
    if new_due >= obligation.due_at:
        return
    obligation.due_at = new_due
    if obligation.escalation_level == 0:
        obligation.next_escalation_at = new_due
    elif obligation.next_escalation_at is not None:
        restart = max(now, new_due) + interval
        obligation.next_escalation_at = min(obligation.next_escalation_at, restart)
