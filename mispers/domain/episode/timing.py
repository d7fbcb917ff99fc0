"""What time brings: the missing-duration strategy meeting, escalation alerts, and when next to
wake."""

from __future__ import annotations

import datetime as dt

from mispers.domain import alert_lifecycle, ladder
from mispers.domain.episode.context import Ctx, Effects, K
from mispers.domain.episode.obligations import require_strategy_meeting
from mispers.domain.state import Alert, EpisodeState, Obligation
from mispers.domain.types import EpisodeStatus
from mispers.policy.model import Policy


def advance(state: EpisodeState, policy: Policy, now: dt.datetime) -> list[Alert]:
    """Everything time brings by `now`: time-triggered obligations, then escalation alerts."""
    return _advance(state, policy, now)[0]


def advance_before(state: EpisodeState, policy: Policy, instant: dt.datetime) -> list[Alert]:
    """What fell due strictly before `instant`, each at the instant its timer was due.

    An event judged at `instant` must see every deadline that passed before it, whether or not
    the timer watching that deadline has fired yet: a server starts a timer when the task that
    asked for it completes, so a slow task makes the timer late, and an event can reach the
    workflow first. The order is the offline driver's: timers due before an event, the event,
    then a timer due at the event's very instant."""
    raised: list[Alert] = []
    while (wake := next_wakeup(state, policy)) is not None and wake < instant:
        raised += advance(state, policy, wake)
    return raised


def advance_and_next_wakeup(
    state: EpisodeState, policy: Policy, now: dt.datetime
) -> tuple[list[Alert], dt.datetime | None]:
    """`advance`, then `next_wakeup`, with the outstanding obligations listed once: the same
    answers as the two calls, for the offline driver, which asks both at every timer of every
    episode of a year."""
    raised, outstanding = _advance(state, policy, now)
    return raised, _next_wakeup(state, policy, outstanding)


def _advance(
    state: EpisodeState, policy: Policy, now: dt.datetime
) -> tuple[list[Alert], list[Obligation]]:
    """The alerts raised, and the obligations still outstanding after them (escalation and
    lapsing acknowledgements move obligations' times, never whether they are outstanding)."""
    # Counted once per timer: the rules ask at every one, over every obligation.
    outstanding = state.outstanding()
    if state.alert_lifecycle:
        settled = len(state.obligations) - len(outstanding)
        alert_lifecycle.resolve_settled(state, now, settled)
    if state.status is EpisodeStatus.CLOSED or not state.reported:
        return [], outstanding
    trigger = _missing_trigger_at(state, policy)
    if trigger is not None and now >= trigger:
        ctx = Ctx(state=state, policy=policy, now=now, event=None, effects=Effects())
        hours = (trigger - (state.reported_at or trigger)).total_seconds() / 3600
        require_strategy_meeting(ctx, f"missing for more than {hours:g} hours", trigger)
        state.missing_trigger_done = True
        outstanding = state.outstanding()
    assert state.risk is not None
    interval = policy.escalation_interval.for_level(state.risk.level)
    if state.alert_lifecycle:
        alert_lifecycle.expire_acks(state, now)
    raised: list[Alert] = []
    # an alert with a lifecycle carries the episode's grade when raised
    grade = state.risk.level if state.alert_lifecycle else None
    for ob in outstanding:
        due = ob.next_escalation_at
        if due is None or due > now:
            continue  # the usual case at a timer: nothing of this obligation's is due
        raised += ladder.escalate(
            ob,
            episode_id=state.episode_id,
            now=now,
            interval=interval,
            ranks=policy.ranks,
            risk_level=grade,
        )
    state.alerts.extend(raised)
    if state.alert_lifecycle:
        alert_lifecycle.raised(state, raised)
    return raised, outstanding


def next_wakeup(state: EpisodeState, policy: Policy) -> dt.datetime | None:
    """The next instant `advance` has work to do; None when nothing is scheduled."""
    return _next_wakeup(state, policy, state.outstanding())


def _next_wakeup(
    state: EpisodeState, policy: Policy, outstanding: list[Obligation]
) -> dt.datetime | None:
    if state.status is EpisodeStatus.CLOSED:
        return None
    times = [o.next_escalation_at for o in outstanding if o.next_escalation_at]
    trigger = _missing_trigger_at(state, policy)
    if trigger is not None:
        times.append(trigger)
    expiry = alert_lifecycle.next_expiry(state) if state.alert_lifecycle else None
    if expiry is not None:
        times.append(expiry)
    return min(times) if times else None


def _missing_trigger_at(state: EpisodeState, policy: Policy) -> dt.datetime | None:
    rule = policy.rule(K.STRATEGY_MEETING)
    if (
        rule.missing_trigger is None
        or state.status is not EpisodeStatus.MISSING
        or state.reported_at is None
        or state.missing_trigger_done
    ):
        return None
    return state.reported_at + rule.missing_trigger
