"""Whether the rules refuse an event: run from the Update validator, so nothing here mutates."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from mispers.domain import alert_lifecycle
from mispers.domain.authority import check_authority, is_supervisor
from mispers.domain.episode.context import K
from mispers.domain.events import (
    Actor,
    AlertAcknowledged,
    ChildFound,
    ClosureApproved,
    ClosureRequested,
    EpisodeReported,
    EventBase,
    RiskAssessed,
)
from mispers.domain.refusals import refuse
from mispers.domain.risk import compute_floor, history_phrase
from mispers.domain.state import EpisodeState, Obligation
from mispers.domain.types import EpisodeStatus, Role
from mispers.policy.model import Policy


def check_event(
    state: EpisodeState,
    event: EventBase,
    policy: Policy,
    now: dt.datetime,
    *,
    authority: bool = True,
) -> None:
    """Raise `EventRefused` if the rules refuse this event; never changes the state.

    `authority=False` only replays histories recorded before the sender's authority was judged
    here: an event of those carrying no actor was then taken for a supervisor's."""
    if authority:
        check_authority(state, event)
    elif event.actor is None:
        event = event.model_copy(update={"actor": _UNATTRIBUTED})
    if event.subject != state.episode_id:
        raise refuse(
            "wrong_episode",
            f"event subject {event.subject} does not belong to episode {state.episode_id}",
        )
    if isinstance(event, EpisodeReported):
        if state.reported:
            raise refuse(
                "already_reported",
                f"episode {state.episode_id} was already reported by another event",
                episode_id=state.episode_id,
            )
        return
    if not state.reported:
        raise refuse("not_reported", f"episode {state.episode_id} has not been reported")
    if state.status is EpisodeStatus.CLOSED:
        raise refuse("episode_closed", f"episode {state.episode_id} is closed")
    checker = _CHECKS.get(type(event))
    if checker is not None:
        checker(state, event, policy, now)


def _check_assessment(state: EpisodeState, event: Any, policy: Policy, now: dt.datetime) -> None:
    data = event.data
    assert state.risk is not None
    floor, reasons = compute_floor(state, policy)
    if data.level < floor:
        raise refuse(
            "below_floor",
            f"risk cannot be graded {data.level.value}: the floor is {floor.value} "
            f"({'; '.join(reasons)})",
            floor=floor.value,
            floor_reasons=reasons,
            requested=data.level.value,
        )
    if data.level < state.risk.level:
        phrase = history_phrase(data.rationale, policy.risk.history_rationale_phrases)
        if phrase is not None and not _is_supervisor(event):
            raise refuse(
                "history_rationale",
                "a downgrade resting on the child's history is refused: repeat episodes only "
                f"raise risk (rationale rests on '{phrase}'); a supervisor must record an "
                "evidenced reason",
                phrase=phrase,
                current=state.risk.level.value,
                requested=data.level.value,
            )


def _check_found(state: EpisodeState, event: Any, policy: Policy, now: dt.datetime) -> None:
    return None


def _check_closure_requested(
    state: EpisodeState, event: Any, policy: Policy, now: dt.datetime
) -> None:
    _require_found(state)
    if any(o.kind is K.CLOSURE_REVIEW and o.outstanding for o in state.obligations):
        raise refuse("closure_pending", "closure has already been requested and awaits review")
    blocking = [o for o in state.outstanding() if o.kind is not K.CLOSURE_REVIEW]
    if blocking:
        raise refuse(
            "open_obligations",
            f"closure refused: {len(blocking)} obligation(s) still open: "
            + ", ".join(o.id for o in blocking),
            open_obligations=[_brief(o) for o in blocking],
        )


def _check_closure_approved(
    state: EpisodeState, event: Any, policy: Policy, now: dt.datetime
) -> None:
    if event.actor is not None and event.actor.role is not Role.SUPERVISOR:
        raise refuse("supervisor_only", "only a supervisor may approve closure")
    _require_found(state)
    outstanding = {o.id: o for o in state.outstanding() if o.kind is not K.CLOSURE_REVIEW}
    waived = {w.obligation_id for w in event.data.waivers}
    unknown = sorted(waived - set(outstanding))
    if unknown:
        raise refuse(
            "unknown_waiver",
            "waivers name obligations that are not open: " + ", ".join(unknown),
            obligation_ids=unknown,
        )
    unwaived = [o for oid, o in outstanding.items() if oid not in waived]
    if unwaived:
        raise refuse(
            "open_obligations",
            f"closure refused: {len(unwaived)} obligation(s) open and not waived: "
            + ", ".join(o.id for o in unwaived),
            open_obligations=[_brief(o) for o in unwaived],
        )


def _check_ack(state: EpisodeState, event: Any, policy: Policy, now: dt.datetime) -> None:
    if not any(a.alert_id == event.data.alert_id for a in state.alerts):
        raise refuse(
            "unknown_alert",
            f"no alert {event.data.alert_id} was raised on this episode",
            alert_id=event.data.alert_id,
        )
    if state.alert_lifecycle:
        alert_lifecycle.check_ack(state, event.data.alert_id)


def _require_found(state: EpisodeState) -> None:
    if state.status is not EpisodeStatus.FOUND:
        raise refuse(
            "child_not_found",
            "the child has not been found and seen in person: a missing episode cannot close",
            status=state.status.value,
        )


_is_supervisor = is_supervisor
_UNATTRIBUTED = Actor(subject="unattributed", role=Role.SUPERVISOR)


_CHECKS: dict[type[EventBase], Callable[[EpisodeState, Any, Policy, dt.datetime], None]] = {
    RiskAssessed: _check_assessment,
    ChildFound: _check_found,
    ClosureRequested: _check_closure_requested,
    ClosureApproved: _check_closure_approved,
    AlertAcknowledged: _check_ack,
}


def _brief(ob: Obligation) -> dict[str, Any]:
    return {
        "id": ob.id,
        "kind": ob.kind.value,
        "due_at": ob.due_at.isoformat(),
        "status": ob.status.value,
    }
