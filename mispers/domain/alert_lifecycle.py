"""An alert's lifecycle: triggered → acknowledged → resolved.

An acknowledgement is a promise to act, so it pauses escalation only for the policy's
acknowledgement timeout: if the obligation is still open then, the alert is triggered again, the
person who took it is paged again and the next rank is alerted. A constable cannot silence an
inspector's page: an acknowledgement from below the alert's rank is recorded but pauses nothing.
An alert is resolved when its obligation is met, waived or lapses, never by hand, and stays so.

Every step is appended to the state's outbox for the workflow to hand to the sinks and, in
episodes that keep them there, to the episode's timeline as an entry of Mispers' own: triggered,
re-triggered when an acknowledgement lapses, resolved. An acknowledgement is not added: it came
as the `mispers.alert.acknowledged` event, which the timeline already holds. Pure rules: time is
the `now` passed in.
"""

from __future__ import annotations

import bisect
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
    TimelineEntry,
)
from mispers.domain.types import AlertState, Rank, Role
from mispers.policy.model import Policy

ACK_TIMEOUT = "ack_timeout"
# The timeline's entries for the steps an alert takes by itself: Mispers is their source and
# their actor (an acknowledgement is the acknowledger's own event).
SYSTEM_SOURCE = "mispers"
SYSTEM_ACTOR = "mispers"
TRIGGERED_TYPE = "mispers.alert.triggered"
RETRIGGERED_TYPE = "mispers.alert.retriggered"
RESOLVED_TYPE = "mispers.alert.resolved"

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
    _emit(state, AlertState.ACKNOWLEDGED, alert, at=alert.acknowledged_at, now=now, by=by)


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
            now=now,
            notify=alert.acknowledged_by,
            reason=ACK_TIMEOUT,
        )
    state.mark_acks_pending_from(len(alerts) if first is None else first)


def resolve_settled(state: EpisodeState, now: dt.datetime, settled: int) -> None:
    """Alerts whose obligation is no longer outstanding (met, waived, lapsed) are resolved.
    `settled` is how many obligations are not outstanding (the caller counts them once)."""
    # Called at every timer, over alerts that top-rank re-alerts make many. Obligations only
    # settle, alerts are only appended (each for an obligation outstanding when raised), and a
    # resolved alert stays so: while no obligation settled or appeared since the last pass,
    # there is nothing to resolve.
    if settled == 0:
        return
    obligations = (len(state.obligations), settled)
    if state.alerts_settled_mark() == obligations:
        return
    state.mark_alerts_settled(obligations)
    by_id: dict[str, Obligation] = {}
    for o in state.obligations:
        by_id.setdefault(o.id, o)  # the first of an id, as `state.obligation` finds it
    for alert in state.alerts:
        if alert.state is AlertState.RESOLVED:
            continue
        ob = by_id.get(alert.obligation_id)
        if ob is None or ob.outstanding:
            continue
        alert.assign(state=AlertState.RESOLVED, resolved_at=ob.met_at or now, ack_expires_at=None)
        _emit(state, AlertState.RESOLVED, alert, at=alert.resolved_at, now=now)


def raised(state: EpisodeState, alerts: Sequence[Alert]) -> None:
    """The first step of alerts just raised (the ladder gave each the episode's grade)."""
    if not (state.keeps_alert_steps() or state.keeps_alert_outbox() or state.alert_timeline):
        return  # a simulation keeps none of the three `_emit` writes to, at every alert
    for alert in alerts:
        _emit(state, AlertState.TRIGGERED, alert, at=alert.raised_at, now=alert.raised_at)


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
    paged_for: Alert | None = None,
) -> None:
    """Who was paged (the rota is read by an activity, so it comes back as a fact); the
    timeline's entry of the step that paged them (`paged_for`, the alert as the step left it)
    names them too."""
    alert = find(state, alert_id)
    if alert is None:
        return
    alert.recipient = recipient
    alert.ack_url = ack_url
    alert.unstaffed = unstaffed
    if not state.alert_timeline or paged_for is None:
        return
    entry_id = timeline_entry_id(paged_for, trigger_step_name(paged_for))
    entry = next((e for e in state.timeline if e.event_id == entry_id), None)
    if entry is not None:
        entry.data = entry.data | {
            "recipient": recipient.person_id if recipient else None,
            "unstaffed": unstaffed,
        }


def trigger_step_name(alert: Alert) -> str:
    """The name of the last step that paged someone for `alert` (a snapshot or the alert)."""
    return "retriggered" if alert.ack_timeouts else "triggered"


def timeline_entry_id(alert: Alert, step: str) -> str:
    """Stable and unique per alert and step: a re-trigger counts the lapses."""
    if step == "retriggered":
        return f"{alert.alert_id}:retriggered:{alert.ack_timeouts}"
    return f"{alert.alert_id}:{step}"


def drain(state: EpisodeState) -> list[AlertTransition]:
    out = state.alert_outbox
    if not out:  # asked after every timer; a run without sinks never fills it
        return []
    state.alert_outbox = []
    return out


def _emit(
    state: EpisodeState,
    transition: AlertState,
    alert: Alert,
    *,
    at: dt.datetime | None,
    now: dt.datetime,
    by: str | None = None,
    **extra: Any,
) -> None:
    if state.keeps_alert_steps():
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
    if state.alert_timeline and transition is not AlertState.ACKNOWLEDGED:
        _record_step(state, transition, alert, at or alert.raised_at, now, extra.get("reason"))


def _record_step(
    state: EpisodeState,
    transition: AlertState,
    alert: Alert,
    at: dt.datetime,
    now: dt.datetime,
    reason: str | None,
) -> None:
    step = trigger_step_name(alert) if transition is AlertState.TRIGGERED else transition.value
    data: dict[str, Any] = {
        "alert_id": alert.alert_id,
        "obligation_id": alert.obligation_id,
        "kind": alert.kind.value,
        "rank": alert.rank.value,
        "escalation_level": alert.escalation_level,
        "recipient": alert.recipient.person_id if alert.recipient else None,
        "unstaffed": alert.unstaffed,
    }
    if step == "retriggered":
        data |= {"reason": reason, "acknowledged_by": alert.acknowledged_by}
    if transition is AlertState.RESOLVED:
        ob = state.obligation(alert.obligation_id)
        data["obligation_status"] = ob.status.value if ob is not None else None
    entry = TimelineEntry(
        event_id=timeline_entry_id(alert, step),
        type={
            "triggered": TRIGGERED_TYPE,
            "retriggered": RETRIGGERED_TYPE,
            "resolved": RESOLVED_TYPE,
        }[step],
        time=at,
        source=SYSTEM_SOURCE,
        actor=SYSTEM_ACTOR,
        recorded_at=now,
        data=data,
    )
    timeline = state.timeline
    if not timeline or timeline[-1].time <= at:  # the usual case: nothing later recorded yet
        timeline.append(entry)
    else:
        times = [e.time for e in timeline]
        timeline.insert(bisect.bisect_right(times, at), entry)


def _snapshot(alert: Alert) -> Alert:
    """The alert as it is now, for the sinks. Its steps and recipient are replaced or appended
    to, never changed in place, so copying the list is enough: a deep copy at every step made
    the rules' cost grow with the square of an alert's steps."""
    return alert.model_copy(update={"steps": list(alert.steps)})
