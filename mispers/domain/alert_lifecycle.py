"""An alert's lifecycle: triggered → acknowledged → resolved.

An acknowledgement is a promise to act, so it pauses escalation only for the policy's
acknowledgement timeout: if the obligation is still open then, the alert is triggered again, the
person who took it is paged again and the next rank is alerted. A constable cannot silence an
inspector's page: an acknowledgement from below the alert's rank is recorded but pauses nothing.
An alert is resolved when its obligation is met, waived or lapses, never by hand, and stays so.

Every step is appended to the state's outbox for the workflow to hand to the sinks. Pure rules:
time is the `now` passed in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from mispers.domain.events import Actor
from mispers.domain.refusals import refuse
from mispers.domain.state import (
    Alert,
    AlertStep,
    AlertTransition,
    EpisodeState,
    Obligation,
    Recipient,
)
from mispers.domain.types import AlertState, Rank, Role
from mispers.policy.model import Policy

ACK_TIMEOUT = "ack_timeout"

# An actor recorded before tokens carried a rank: the role stands for one (an officer is a
# constable, a supervisor at least a sergeant). A rank on the actor always wins.
_ROLE_RANK = {Role.OFFICER: Rank.OFFICER, Role.SUPERVISOR: Rank.SERGEANT}


def acknowledger_rank(actor: Actor | None) -> Rank | None:
    """The rank an acknowledgement speaks with; None for an incident source or a signed link
    (trusted to speak for the rank paged)."""
    if actor is None:
        return None
    rank = getattr(actor, "rank", None)
    if rank:
        return Rank(rank)
    return _ROLE_RANK.get(actor.role)


def find(state: EpisodeState, alert_id: str) -> Alert | None:
    return next((a for a in state.alerts if a.alert_id == alert_id), None)


def check_ack(state: EpisodeState, alert_id: str) -> None:
    """A resolved alert is final: acknowledging it is refused, naming its state."""
    alert = find(state, alert_id)
    if alert is not None and alert.state is AlertState.RESOLVED:
        raise refuse(
            "alert_resolved",
            f"alert {alert_id} is resolved (its obligation was met or waived): there is "
            "nothing to acknowledge",
            alert_id=alert_id,
            state=alert.state.value,
        )


def is_repeat_ack(state: EpisodeState, alert_id: str, by: str) -> bool:
    """The same person acknowledging an alert they hold is a duplicate, not a new promise."""
    alert = find(state, alert_id)
    return (
        alert is not None and alert.state is AlertState.ACKNOWLEDGED and alert.acknowledged_by == by
    )


def pauses(ranks: Sequence[Rank], acknowledger: Rank | None, alert_rank: Rank) -> bool:
    if acknowledger is None:
        return True
    index = {rank: i for i, rank in enumerate(ranks)}
    return index.get(acknowledger, -1) >= index.get(alert_rank, len(ranks))


def acknowledge(
    state: EpisodeState,
    policy: Policy,
    alert_id: str,
    by: str,
    rank: Rank | None,
    now: dt.datetime,
    at: dt.datetime | None = None,
) -> None:
    """`at` is when the person acknowledged (the event's time); the pause runs from `now`."""
    alert = find(state, alert_id)
    if alert is None or alert.state is AlertState.RESOLVED:
        return
    ob = state.obligation(alert.obligation_id)
    current = ob is not None and ob.outstanding and ob.escalation_level == alert.escalation_level
    pausing = current and pauses(policy.ranks, rank, alert.rank)
    if alert.state is AlertState.ACKNOWLEDGED and alert.ack_pauses_escalation and not pausing:
        return  # a lower rank beside a standing acknowledgement: the timeline keeps it
    alert.state = AlertState.ACKNOWLEDGED
    alert.acknowledged_by = by
    alert.acknowledged_at = at or now
    alert.acknowledged_rank = rank
    alert.ack_pauses_escalation = pausing
    alert.ack_expires_at = None
    if pausing and ob is not None and state.risk is not None:
        expires = now + policy.ack_timeout.for_level(state.risk.level)
        alert.ack_expires_at = expires
        ob.next_escalation_at = expires
        state.mark_acks_pending_from(0)  # where this alert sits is not worth a search
    _emit(state, AlertState.ACKNOWLEDGED, alert, at=alert.acknowledged_at, by=by)


def expire_acks(state: EpisodeState, now: dt.datetime) -> None:
    """Acknowledgements whose time ran out with the work undone: triggered again, the
    acknowledger paged again, and escalation (due at the expiry) goes one rank up."""
    # Called at every timer: alerts before the first one holding a lapsing acknowledgement are
    # skipped (only `acknowledge` gives an alert one, and it moves the mark back to the start).
    alerts = state.alerts
    first: int | None = None
    for i in range(state.acks_pending_from(), len(alerts)):
        alert = alerts[i]
        if alert.state is not AlertState.ACKNOWLEDGED or alert.ack_expires_at is None:
            continue
        if alert.ack_expires_at > now:
            first = i if first is None else first
            continue
        ob = state.obligation(alert.obligation_id)
        if ob is None or not ob.outstanding:
            first = i if first is None else first
            continue  # resolved instead
        expired = alert.ack_expires_at
        alert.state = AlertState.TRIGGERED
        alert.ack_expires_at = None
        alert.ack_timeouts += 1
        if ob.next_escalation_at is None or ob.next_escalation_at > expired:
            ob.next_escalation_at = expired
        _emit(
            state,
            AlertState.TRIGGERED,
            alert,
            at=expired,
            notify=alert.acknowledged_by,
            reason=ACK_TIMEOUT,
        )
    state.mark_acks_pending_from(len(alerts) if first is None else first)


def resolve_settled(state: EpisodeState, now: dt.datetime) -> None:
    """Alerts whose obligation is no longer outstanding (met, waived, lapsed) are resolved."""
    # Called at every timer, over alerts that top-rank re-alerts make many. Obligations only
    # settle and alerts are only appended, and a resolved alert stays so: while no obligation
    # settled or appeared since the last pass, only the alerts raised since need looking at.
    settled = sum(1 for o in state.obligations if not o.outstanding)
    if settled == 0:
        return
    obligations = (len(state.obligations), settled)
    mark = state.alerts_settled_mark()
    start = mark[0] if mark is not None and mark[1:] == obligations else 0
    state.mark_alerts_settled((len(state.alerts), *obligations))
    if start == len(state.alerts):
        return
    by_id: dict[str, Obligation] = {}
    for o in state.obligations:
        by_id.setdefault(o.id, o)  # the first of an id, as `state.obligation` finds it
    for alert in state.alerts[start:]:
        if alert.state is AlertState.RESOLVED:
            continue
        ob = by_id.get(alert.obligation_id)
        if ob is None or ob.outstanding:
            continue
        alert.state = AlertState.RESOLVED
        alert.resolved_at = ob.met_at or now
        alert.ack_expires_at = None
        _emit(state, AlertState.RESOLVED, alert, at=alert.resolved_at)


def raised(state: EpisodeState, alerts: Sequence[Alert]) -> None:
    for alert in alerts:
        alert.risk_level = state.risk.level if state.risk else None
        _emit(state, AlertState.TRIGGERED, alert, at=alert.raised_at)


def next_expiry(state: EpisodeState) -> dt.datetime | None:
    alerts = state.alerts
    times = [
        a.ack_expires_at
        for a in alerts[state.acks_pending_from() :]
        if a.state is AlertState.ACKNOWLEDGED and a.ack_expires_at is not None
    ]
    return min(times) if times else None


def record_recipient(
    state: EpisodeState,
    alert_id: str,
    recipient: Recipient | None,
    ack_url: str | None,
    unstaffed: bool,
) -> None:
    """Who the delivery paged (the rota is read by the delivery, so it comes back as a fact)."""
    alert = find(state, alert_id)
    if alert is None:
        return
    alert.recipient = recipient
    alert.ack_url = ack_url
    alert.unstaffed = unstaffed


def drain(state: EpisodeState) -> list[AlertTransition]:
    out, state.alert_outbox = state.alert_outbox, []
    return out


def _emit(
    state: EpisodeState,
    transition: AlertState,
    alert: Alert,
    *,
    at: dt.datetime | None,
    by: str | None = None,
    **extra: Any,
) -> None:
    alert.steps.append(
        AlertStep(
            transition=transition,
            at=at or alert.raised_at,
            by=by or extra.get("notify"),
            reason=extra.get("reason"),
        )
    )
    if state.keeps_alert_outbox():
        state.alert_outbox.append(
            AlertTransition(transition=transition, alert=_snapshot(alert), **extra)
        )


def _snapshot(alert: Alert) -> Alert:
    """The alert as it is now, for the sinks. Its steps and recipient are replaced or appended
    to, never changed in place, so copying the list is enough: a deep copy at every step made
    the rules' cost grow with the square of an alert's steps."""
    return alert.model_copy(update={"steps": list(alert.steps)})
