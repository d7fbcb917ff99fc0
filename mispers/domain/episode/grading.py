"""The risk grade: raised to the floor the facts set, and open deadlines brought forward when it
rises."""

from __future__ import annotations

from mispers.domain import ladder
from mispers.domain.episode.context import INFO_REVIEW, SYSTEM_ACTOR, Ctx, K
from mispers.domain.episode.obligations import due_delta, review_number, review_step
from mispers.domain.risk import compute_floor
from mispers.domain.state import RiskGrading
from mispers.domain.types import RiskLevel


def set_level(ctx: Ctx, level: RiskLevel) -> None:
    """Change the grade; raising it brings open deadlines forward to the new level's figures."""
    state = ctx.state
    assert state.risk is not None
    previous = state.risk.level
    state.risk.level = level
    if level > previous:
        recompute_deadlines(ctx)


def recompute_deadlines(ctx: Ctx) -> None:
    state = ctx.state
    assert state.risk is not None
    interval = ctx.policy.escalation_interval.for_level(state.risk.level)
    for ob in state.outstanding():
        if ob.kind is K.RISK_REVIEW and ob.id.startswith(INFO_REVIEW):
            continue
        if ob.kind is K.RISK_REVIEW:
            rank, offset = review_step(ctx.policy, state.risk.level, review_number(ob.id))
            new_due = ob.anchor_at + offset
            if new_due < ob.due_at:
                ob.owner = rank
        else:
            new_due = ob.anchor_at + due_delta(ctx.policy, state, ob.kind, ob.id)
        ladder.next_escalation_after_deadline_change(ob, new_due, ctx.now, interval)


def reconcile_risk(ctx: Ctx) -> None:
    """Recompute the floor; if the grade is below it, raise the grade (recorded as automatic)."""
    state = ctx.state
    assert state.risk is not None
    floor, reasons = compute_floor(state, ctx.policy)
    state.risk.floor = floor
    state.risk.floor_reasons = reasons
    if state.risk.level < floor:
        state.risk.history.append(
            RiskGrading(
                level=floor,
                at=ctx.now,
                by=SYSTEM_ACTOR,
                rationale="raised to the floor: " + "; ".join(reasons),
                automatic=True,
                event_id=None if ctx.event is None else ctx.event.id,
            )
        )
        set_level(ctx, floor)
