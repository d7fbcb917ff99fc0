"""Obligations: opening them with their deadlines, the periodic and information reviews, the one
open strategy meeting, and meeting or lapsing them."""

from __future__ import annotations

import datetime as dt

from mispers.domain.episode.context import INFO_REVIEW, PERIODIC_REVIEW, Ctx, K
from mispers.domain.state import EpisodeState, Obligation
from mispers.domain.types import EpisodeStatus, ObligationKind, ObligationStatus, Rank, RiskLevel
from mispers.policy.model import Policy


def add(
    ctx: Ctx,
    kind: ObligationKind,
    anchor: dt.datetime,
    *,
    oid: str | None = None,
    owner: Rank | None = None,
    due: dt.timedelta | None = None,
    subject: str | None = None,
    reason: str | None = None,
) -> Obligation | None:
    """Create an obligation unless one with the same id exists; its clock starts at `anchor`."""
    state = ctx.state
    oid = oid or kind.value
    if state.obligation(oid) is not None:
        return None
    delta = due if due is not None else due_delta(ctx.policy, state, kind, oid)
    due_at = anchor + delta
    rule_owner = owner or (
        ctx.policy.rule(kind).owner if kind is not K.RISK_REVIEW else ctx.policy.ranks[0]
    )
    ob = Obligation(
        id=oid,
        kind=kind,
        owner=rule_owner,
        due_at=due_at,
        anchor_at=anchor,
        next_escalation_at=due_at,
        subject=subject,
        reason=reason,
    )
    state.obligations.append(ob)
    return ob


def due_delta(policy: Policy, state: EpisodeState, kind: ObligationKind, oid: str) -> dt.timedelta:
    assert state.risk is not None
    level = state.risk.level
    if kind is K.RISK_REVIEW:
        if oid.startswith(INFO_REVIEW):
            return policy.risk.new_information_review
        return review_step(policy, level, review_number(oid))[1]
    rule = policy.rule(kind)
    if rule.looked_after_due is not None and state.looked_after:
        return min(rule.looked_after_due, rule.due.for_level(level))
    return rule.due.for_level(level)


def is_periodic(ob: Obligation) -> bool:
    return ob.kind is K.RISK_REVIEW and not ob.id.startswith(INFO_REVIEW)


def review_number(oid: str) -> int:
    return int(oid.rsplit(":", 1)[1])


def review_step(policy: Policy, level: RiskLevel, number: int) -> tuple[Rank, dt.timedelta]:
    """Review `number` (1-based) of the periodic schedule: (reviewer rank, time from report)."""
    schedule = policy.risk_reviews.for_level(level)
    steps = schedule.steps
    if number <= len(steps):
        step = steps[number - 1]
        return step.rank, step.after
    return steps[-1].rank, steps[-1].after + schedule.every * (number - len(steps))


def schedule_periodic_review(ctx: Ctx, number: int) -> None:
    state = ctx.state
    assert state.risk is not None and state.reported_at is not None
    rank, offset = review_step(ctx.policy, state.risk.level, number)
    due_at = state.reported_at + offset
    if due_at <= ctx.now:
        due_at = ctx.now + ctx.policy.risk_reviews.for_level(state.risk.level).every
    add(
        ctx,
        K.RISK_REVIEW,
        state.reported_at,
        oid=f"{PERIODIC_REVIEW}:{number}",
        owner=rank,
        due=due_at - state.reported_at,
        reason=f"periodic review {number} while missing",
    )


def information_review(ctx: Ctx, why: str) -> None:
    """New information calls for the grade to be looked at again (APP)."""
    state = ctx.state
    if state.status is EpisodeStatus.CLOSED:
        return
    pending = [o for o in state.outstanding() if o.id.startswith(INFO_REVIEW)]
    if pending:
        pending[0].reason = f"{pending[0].reason}; {why}"
        return
    number = 1 + sum(1 for o in state.obligations if o.id.startswith(INFO_REVIEW))
    add(
        ctx,
        K.RISK_REVIEW,
        min(ctx.now, ctx.at),
        oid=f"{INFO_REVIEW}:{number}",
        owner=ctx.policy.risk.new_information_reviewer,
        reason=f"new information: {why}",
    )


def require_strategy_meeting(
    ctx: Ctx, why: str, anchor: dt.datetime, due: dt.timedelta | None = None
) -> None:
    """One strategy meeting open at a time gathers every reason that calls for it."""
    state = ctx.state
    open_meetings = [o for o in state.outstanding() if o.kind is K.STRATEGY_MEETING]
    if open_meetings:
        ob = open_meetings[0]
        if why not in (ob.reason or ""):
            ob.reason = f"{ob.reason}; {why}" if ob.reason else why
        return
    number = 1 + sum(1 for o in state.obligations if o.kind is K.STRATEGY_MEETING)
    add(
        ctx,
        K.STRATEGY_MEETING,
        min(anchor, ctx.now),
        oid=f"{K.STRATEGY_MEETING.value}:{number}",
        due=due,
        reason=why,
    )


def meet(
    ctx: Ctx, ob: Obligation, by_event: str | None = None, at: dt.datetime | None = None
) -> None:
    """Met by `by_event` or, when not named, by the event being applied."""
    ob.status = ObligationStatus.MET
    ob.met_at = at or ctx.at
    ob.met_by_event = by_event or (ctx.event.id if ctx.event is not None else None)
    ob.next_escalation_at = None


def meet_kind(
    ctx: Ctx,
    kind: ObligationKind,
    *,
    all_of_kind: bool = False,
    by_event: str | None = None,
    at: dt.datetime | None = None,
) -> bool:
    matching = sorted(
        (o for o in ctx.state.outstanding() if o.kind is kind), key=lambda o: o.due_at
    )
    for ob in matching if all_of_kind else matching[:1]:
        meet(ctx, ob, by_event=by_event, at=at)
    return bool(matching)


def lapse(ob: Obligation, reason: str, now: dt.datetime) -> None:
    ob.status = ObligationStatus.LAPSED
    ob.closed_reason = reason
    ob.met_at = now
    ob.next_escalation_at = None
