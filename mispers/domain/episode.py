"""The episode's rules as plain functions over `EpisodeState`.

The workflow calls `check_event` from its Update validator (refusals never touch state),
`apply_event` from the Update handler, `advance` when a deadline passes, and `next_wakeup` to know
how long to sleep. Everything here is deterministic: time is always the `now` passed in.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from mispers.domain import alert_lifecycle, ladder
from mispers.domain.events import (
    AlertAcknowledged,
    ChildFound,
    ClosureApproved,
    ClosureRequested,
    CrimeRecorded,
    EnquiryRecorded,
    EpisodeReported,
    EventBase,
    LinkedPersonIdentified,
    LinkedPersonResolved,
    ReturnInterviewCompleted,
    RiskAssessed,
    SafeAndWellCompleted,
    SightingReported,
    SocialServicesContacted,
    StrategyMeetingHeld,
    event_actor_id,
)
from mispers.domain.locations import EXPLOITATION_CATEGORIES, LocationOfConcern, postcode_key
from mispers.domain.people import age_on
from mispers.domain.refusals import refuse
from mispers.domain.risk import compute_floor, exploitation_flags, history_phrase
from mispers.domain.state import (
    Alert,
    Communication,
    EpisodeState,
    LinkedPerson,
    LocationHit,
    Obligation,
    RepeatCounts,
    RiskGrading,
    RiskState,
    TimelineEntry,
)
from mispers.domain.types import (
    EpisodeStatus,
    Flag,
    ObligationKind,
    ObligationStatus,
    Rank,
    RiskLevel,
    Role,
)
from mispers.policy.model import Policy

K = ObligationKind
SYSTEM_ACTOR = "mispers"
PERIODIC_REVIEW = "risk_review"
INFO_REVIEW = "risk_review:info"
PERSON_OF_CONCERN_RELATIONS = frozenset({"suspect", "harbourer", "adult_of_concern"})
EXPLOITATION_SCREENING_FACTOR = "exploitation_screening"


@dataclass
class LocationCheck:
    """A location the workflow must look up in the register (I/O, so an activity)."""

    postcode_key: str
    event_id: str


@dataclass
class Effects:
    """What applying an event asks of the workflow beyond the state change."""

    child_sync: bool = False
    location_checks: list[LocationCheck] = field(default_factory=list)


def new_state(episode_id: str, policy_version: str) -> EpisodeState:
    return EpisodeState(episode_id=episode_id, policy_version=policy_version)


# --- checking (Update validator: must not mutate) ----------------------------------------------


def check_event(state: EpisodeState, event: EventBase, policy: Policy, now: dt.datetime) -> None:
    """Raise `EventRefused` if the rules refuse this event; never changes the state."""
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


def _is_supervisor(event: EventBase) -> bool:
    return event.actor is None or event.actor.role is Role.SUPERVISOR


_CHECKS: dict[type[EventBase], Callable[[EpisodeState, Any, Policy, dt.datetime], None]] = {
    RiskAssessed: _check_assessment,
    ChildFound: _check_found,
    ClosureRequested: _check_closure_requested,
    ClosureApproved: _check_closure_approved,
    AlertAcknowledged: _check_ack,
}


# --- applying ---------------------------------------------------------------------------------


@dataclass
class _Ctx:
    state: EpisodeState
    policy: Policy
    now: dt.datetime
    event: EventBase
    effects: Effects

    @property
    def at(self) -> dt.datetime:
        """When the event happened, never later than now (clock skew cannot delay a clock)."""
        return min(self.event.time, self.now)


def apply_event(state: EpisodeState, event: EventBase, policy: Policy, now: dt.datetime) -> Effects:
    """Record an event the rules accepted: timeline, obligations, risk, flags."""
    ctx = _Ctx(state=state, policy=policy, now=now, event=event, effects=Effects())
    _record_timeline(state, event, now)
    handler = _HANDLERS.get(type(event))
    if handler is not None:
        handler(ctx, event)
    return ctx.effects


def _record_timeline(state: EpisodeState, event: EventBase, now: dt.datetime) -> None:
    from mispers.domain.messages import event_key

    state.event_keys.append(event_key(event))
    entry = TimelineEntry(
        event_id=event.id,
        type=getattr(event, "type", "unknown"),
        time=event.time,
        source=event.source,
        actor=event_actor_id(event),
        posted_by=event.actor,
        recorded_at=now,
        data=_event_data(event),
    )
    times = [e.time for e in state.timeline]
    state.timeline.insert(bisect.bisect_right(times, event.time), entry)


def _event_data(event: EventBase) -> dict[str, Any]:
    data = getattr(event, "data", None)
    return data.model_dump(mode="json") if isinstance(data, BaseModel) else {}


def _on_reported(ctx: _Ctx, event: EpisodeReported) -> None:
    state, data = ctx.state, event.data
    state.reported = True
    state.child = data.child
    state.child_ref = data.child.child_ref
    state.looked_after = data.child.looked_after
    state.reported_at = ctx.at
    state.last_seen_at = data.last_seen_at
    for flag in exploitation_flags(data.risk_factors):
        state.add_flag(flag)
    state.risk = RiskState(
        level=data.initial_risk,
        floor=RiskLevel.VERY_LOW,
        history=[
            RiskGrading(
                level=data.initial_risk,
                at=ctx.at,
                by=data.officer_id,
                rationale="initial grading at report",
                event_id=event.id,
            )
        ],
    )
    _reconcile_risk(ctx)
    anchor = ctx.at
    _add(ctx, K.SYSTEMS_CHECKS, anchor)
    _add(ctx, K.SUPERVISOR_REVIEW, anchor)
    for oid, authority in _authorities(state, K.SOCIAL_SERVICES_NOTIFIED_MISSING):
        _add(ctx, K.SOCIAL_SERVICES_NOTIFIED_MISSING, anchor, oid=oid, subject=authority)
    _add(ctx, K.PNC_CIRCULATED, anchor)
    _schedule_periodic_review(ctx, 1)
    if state.has_flag(Flag.CSE) or state.has_flag(Flag.CCE):
        _require_strategy_meeting(ctx, "exploitation indicator at report", anchor)
    ctx.effects.child_sync = True


def _authorities(state: EpisodeState, kind: ObligationKind) -> list[tuple[str, str | None]]:
    """Who must be told: for a looked-after child both the responsible and, if placed out of
    area, the host authority (DfE 2014)."""
    child = state.child
    assert child is not None
    if child.looked_after:
        pairs: list[tuple[str, str | None]] = [
            (f"{kind.value}:responsible", child.responsible_authority)
        ]
        if child.host_authority and not _same_authority(
            child.host_authority, child.responsible_authority
        ):
            pairs.append((f"{kind.value}:host", child.host_authority))
        return pairs
    return [(kind.value, child.responsible_authority)]


def _same_authority(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


def _on_assessed(ctx: _Ctx, event: RiskAssessed) -> None:
    state, data = ctx.state, event.data
    assert state.risk is not None
    flagged = None
    if data.level < state.risk.level and history_phrase(
        data.rationale, ctx.policy.risk.history_rationale_phrases
    ):
        flagged = "history-based rationale for a downgrade, accepted by a supervisor"
    state.risk.history.append(
        RiskGrading(
            level=data.level,
            at=ctx.at,
            by=data.assessed_by,
            rank=data.rank,
            rationale=data.rationale,
            event_id=event.id,
            flagged=flagged,
        )
    )
    _set_level(ctx, data.level)
    for flag in exploitation_flags(data.factors):
        if state.add_flag(flag):
            _require_strategy_meeting(ctx, "exploitation indicator recorded", ctx.at)
    _reconcile_risk(ctx)
    rank_index = _rank_index(ctx.policy, data.rank)
    for ob in state.outstanding():
        if ob.kind in (K.SUPERVISOR_REVIEW, K.RISK_REVIEW) and rank_index >= _rank_index(
            ctx.policy, ob.owner
        ):
            _meet(ctx, ob)
            if _is_periodic(ob) and state.status is EpisodeStatus.MISSING:
                _schedule_periodic_review(ctx, _review_number(ob.id) + 1)
    if EXPLOITATION_SCREENING_FACTOR in data.factors:
        _meet_kind(ctx, K.EXPLOITATION_SCREENING)
    ctx.effects.child_sync = True


def _on_contacted(ctx: _Ctx, event: SocialServicesContacted) -> None:
    state, d = ctx.state, event.data
    state.communications.append(
        Communication(
            event_id=event.id,
            at=event.time,
            direction=d.direction,
            authority=d.authority,
            contact_name=d.contact_name,
            method=d.method,
            purpose=d.purpose,
            summary=d.summary,
            officer_id=d.officer_id,
        )
    )
    state.communications.sort(key=lambda c: c.at)
    if d.direction != "outbound":
        return
    kind = {
        "missing_notification": K.SOCIAL_SERVICES_NOTIFIED_MISSING,
        "return_notification": K.SOCIAL_SERVICES_NOTIFIED_RETURN,
    }.get(d.purpose)
    if kind is None:
        return
    for ob in state.outstanding():
        if ob.kind is kind and (ob.subject is None or _same_authority(ob.subject, d.authority)):
            _meet(ctx, ob)


def _on_enquiry(ctx: _Ctx, event: EnquiryRecorded) -> None:
    if event.data.kind == "systems_checked":
        _meet_kind(ctx, K.SYSTEMS_CHECKS)
        assert ctx.state.risk is not None
        ctx.state.risk.confirmed = True
        ctx.effects.child_sync = True
    elif event.data.kind == "pnc_circulated":
        _meet_kind(ctx, K.PNC_CIRCULATED)


def _on_linked_identified(ctx: _Ctx, event: LinkedPersonIdentified) -> None:
    state, data = ctx.state, event.data
    person = _person(state, data.person_ref)
    if person is None:
        person = LinkedPerson(person_ref=data.person_ref, relation=data.relation)
        state.linked_persons.append(person)
    person.relation = data.relation
    person.identified_by_event = event.id
    ob = _add(
        ctx,
        K.LINKED_PERSON_RESOLUTION,
        ctx.at,
        oid=f"{K.LINKED_PERSON_RESOLUTION.value}:{data.person_ref}",
        subject=data.person_ref,
        reason=f"linked {data.relation} identified",
    )
    if ob is not None and person.resolved:
        _meet(ctx, ob, by_event=person.resolved)
    if data.relation in PERSON_OF_CONCERN_RELATIONS:
        _information_review(ctx, f"linked {data.relation} identified")
    if data.location and data.location.postcode:
        _queue_location(ctx, data.location.postcode)


def _on_linked_resolved(ctx: _Ctx, event: LinkedPersonResolved) -> None:
    state, data = ctx.state, event.data
    person = _person(state, data.person_ref)
    if person is None:
        person = LinkedPerson(person_ref=data.person_ref, relation="unknown")
        state.linked_persons.append(person)
    person.resolved = event.id
    ob = state.obligation(f"{K.LINKED_PERSON_RESOLUTION.value}:{data.person_ref}")
    if ob is not None and ob.outstanding:
        _meet(ctx, ob)


def _on_sighting(ctx: _Ctx, event: SightingReported) -> None:
    data = event.data
    _check_companions(ctx, data.with_persons, "sighted with")
    if data.location.postcode:
        _queue_location(ctx, data.location.postcode)


def _on_found(ctx: _Ctx, event: ChildFound) -> None:
    state, data = ctx.state, event.data
    _check_companions(ctx, data.with_persons, "found with")
    if data.location.postcode:
        _queue_location(ctx, data.location.postcode)
    if not data.seen_in_person or state.status is not EpisodeStatus.MISSING:
        return  # a third-party account does not end a missing episode (APP, IOPC 2018)
    found_at = min(data.found_at, ctx.now)
    state.status = EpisodeStatus.FOUND
    state.found_at = found_at
    state.found_postcode_key = postcode_key(data.location.postcode)
    for ob in state.outstanding():
        if ob.kind is K.RISK_REVIEW and not ob.id.startswith(INFO_REVIEW):
            _lapse(ob, "child found: periodic review while missing no longer applies", ctx.now)
        elif ob.kind is K.STRATEGY_MEETING and (ob.reason or "").startswith("missing for"):
            _lapse(ob, "child found before the missing-duration strategy meeting", ctx.now)
    _add(ctx, K.SAFE_AND_WELL_CHECK, found_at)
    for oid, authority in _authorities(state, K.SOCIAL_SERVICES_NOTIFIED_RETURN):
        _add(ctx, K.SOCIAL_SERVICES_NOTIFIED_RETURN, found_at, oid=oid, subject=authority)
    _add(ctx, K.RETURN_INTERVIEW, found_at)
    _meet_from_earlier_events(ctx)
    ctx.effects.child_sync = True


def _meet_from_earlier_events(ctx: _Ctx) -> None:
    """Events can arrive before the one that creates their obligation (ordering is by `time`,
    not arrival): a safe and well check or return interview already on the record counts."""
    state = ctx.state
    for entry in state.timeline:
        if entry.type == "mispers.safe_and_well.completed" and entry.data.get("in_person"):
            _meet_kind(ctx, K.SAFE_AND_WELL_CHECK, by_event=entry.event_id, at=entry.time)
        elif entry.type == "mispers.return_interview.completed":
            _meet_kind(ctx, K.RETURN_INTERVIEW, by_event=entry.event_id, at=entry.time)
    for comm in state.communications:
        if comm.direction == "outbound" and comm.purpose == "return_notification":
            for ob in state.outstanding():
                if ob.kind is K.SOCIAL_SERVICES_NOTIFIED_RETURN and (
                    ob.subject is None or _same_authority(ob.subject, comm.authority)
                ):
                    _meet(ctx, ob, by_event=comm.event_id, at=comm.at)


def _on_safe_and_well(ctx: _Ctx, event: SafeAndWellCompleted) -> None:
    state, data = ctx.state, event.data
    if data.in_person:
        _meet_kind(ctx, K.SAFE_AND_WELL_CHECK)
    child = state.child
    assert child is not None
    age = age_on(child.date_of_birth, event.time.date())
    for disclosure in data.disclosures:
        hint = crime_hint(disclosure.kind, age, ctx.policy)
        if disclosure.kind == "exploitation":
            flag = Flag.CCE if disclosure.exploitation_type == "cce" else Flag.CSE
            if state.add_flag(flag):
                _require_strategy_meeting(ctx, "exploitation disclosed", ctx.at)
        if hint is None:
            continue
        state.add_flag(Flag.CRIME_DISCLOSED)
        number = 1 + sum(1 for o in state.obligations if o.kind is K.CRIME_RECORDING)
        _add(
            ctx,
            K.CRIME_RECORDING,
            ctx.at,
            oid=f"{K.CRIME_RECORDING.value}:{number}",
            reason=hint,
        )
    _reconcile_risk(ctx)


def crime_hint(kind: str, age: int, policy: Policy) -> str | None:
    """The NCRS classification hint for a disclosure, or None if it is not a crime to record.

    A child under 13 cannot consent; 13-15: sexual activity with a child (SOA 2003)."""
    rules = policy.disclosures
    if kind in ("sexual_activity", "sexual_offence"):
        if age < rules.under_13_age:
            return "rape / sexual assault of a child under 13 (SOA 2003 ss5-8)"
        if age < rules.age_of_consent:
            return "sexual activity with a child (SOA 2003 s9 onwards)"
        if kind == "sexual_offence":
            return "sexual offence (SOA 2003)"
        return None
    if kind == "exploitation":
        return "exploitation of a child (e.g. Modern Slavery Act 2015, SOA 2003 s48)"
    if kind == "physical_harm":
        return "violence against the person"
    return None


def _on_return_interview(ctx: _Ctx, event: ReturnInterviewCompleted) -> None:
    _meet_kind(ctx, K.RETURN_INTERVIEW)


def _on_crime(ctx: _Ctx, event: CrimeRecorded) -> None:
    pending = sorted(
        (o for o in ctx.state.outstanding() if o.kind is K.CRIME_RECORDING), key=lambda o: o.due_at
    )
    if pending:
        _meet(ctx, pending[0])
        pending[0].subject = event.data.crime_ref


def _on_strategy_meeting(ctx: _Ctx, event: StrategyMeetingHeld) -> None:
    met = _meet_kind(ctx, K.STRATEGY_MEETING, all_of_kind=True)
    rule = ctx.policy.rule(K.STRATEGY_MEETING)
    if met and ctx.state.status is EpisodeStatus.MISSING and rule.repeat_every:
        _require_strategy_meeting(ctx, "weekly while missing", ctx.at, due=rule.repeat_every)


def _on_closure_requested(ctx: _Ctx, event: ClosureRequested) -> None:
    ctx.state.closure.requested_at = ctx.at
    ctx.state.closure.requested_by_event = event.id
    _add(ctx, K.CLOSURE_REVIEW, ctx.at)


def _on_closure_approved(ctx: _Ctx, event: ClosureApproved) -> None:
    state, data = ctx.state, event.data
    reasons = {w.obligation_id: w.reason for w in data.waivers}
    for ob in state.outstanding():
        if ob.id in reasons:
            ob.status = ObligationStatus.WAIVED
            ob.closed_reason = reasons[ob.id]
            ob.waived_by = data.supervisor_id
            ob.met_at = ctx.now
            ob.met_by_event = event.id
            ob.next_escalation_at = None
        elif ob.kind is K.CLOSURE_REVIEW:
            _meet(ctx, ob)
    for ob in state.outstanding():  # anything left (e.g. an information review) lapses
        _lapse(ob, "episode closed by a supervisor", ctx.now)
    state.status = EpisodeStatus.CLOSED
    state.closed_at = ctx.now
    state.closure.approved_at = ctx.now
    state.closure.approved_by = data.supervisor_id
    state.closure.rationale = data.rationale
    ctx.effects.child_sync = True


def _on_ack(ctx: _Ctx, event: AlertAcknowledged) -> None:
    if ctx.state.alert_lifecycle:
        rank = alert_lifecycle.acknowledger_rank(event.actor)
        alert_lifecycle.acknowledge(
            ctx.state, ctx.policy, event.data.alert_id, event.data.by, rank, ctx.now, ctx.at
        )
        return
    for alert in ctx.state.alerts:
        if alert.alert_id == event.data.alert_id and alert.acknowledged_by is None:
            alert.acknowledged_by = event.data.by
            alert.acknowledged_at = ctx.at


_HANDLERS: dict[type[EventBase], Callable[[_Ctx, Any], None]] = {
    EpisodeReported: _on_reported,
    RiskAssessed: _on_assessed,
    SocialServicesContacted: _on_contacted,
    EnquiryRecorded: _on_enquiry,
    LinkedPersonIdentified: _on_linked_identified,
    LinkedPersonResolved: _on_linked_resolved,
    SightingReported: _on_sighting,
    ChildFound: _on_found,
    SafeAndWellCompleted: _on_safe_and_well,
    ReturnInterviewCompleted: _on_return_interview,
    CrimeRecorded: _on_crime,
    StrategyMeetingHeld: _on_strategy_meeting,
    ClosureRequested: _on_closure_requested,
    ClosureApproved: _on_closure_approved,
    AlertAcknowledged: _on_ack,
}


# --- facts learnt by activities ---------------------------------------------------------------


def apply_child_history(
    state: EpisodeState,
    counts_by_days: dict[int, int],
    repeated_location_keys: Iterable[str],
    policy: Policy,
    now: dt.datetime,
) -> None:
    """The child's record answered: repeat counts (this episode included) and places found
    before. Repeat episodes only ever raise risk."""
    if state.status is EpisodeStatus.CLOSED:
        return
    ctx = _Ctx(state=state, policy=policy, now=now, event=_NO_EVENT, effects=Effects())
    state.repeat = RepeatCounts(
        episodes_30d=counts_by_days.get(30, 0),
        episodes_90d=counts_by_days.get(90, 0),
        episodes_365d=counts_by_days.get(365, 0),
        by_days=dict(counts_by_days),
        known=True,
    )
    for threshold in policy.repeat.thresholds:
        if counts_by_days.get(threshold.days, 0) < threshold.episodes:
            continue
        if threshold.flag_repeat:
            state.add_flag(Flag.REPEAT)
        why = f"repeat: {counts_by_days[threshold.days]} episodes in {threshold.days} days"
        for kind in threshold.requires:
            if kind is K.STRATEGY_MEETING:
                _require_strategy_meeting(ctx, why, now)
            elif not any(o.kind is kind for o in state.obligations):
                _add(ctx, kind, now, reason=why)
    if state.found_postcode_key and state.found_postcode_key in set(repeated_location_keys):
        state.add_flag(Flag.REPEAT_LOCATION)
    _reconcile_risk(ctx)


def apply_location_hits(
    state: EpisodeState,
    hits: list[LocationOfConcern],
    event_id: str,
    policy: Policy,
    now: dt.datetime,
) -> None:
    """A sighting or found location is on the register: high risk, flags, a strategy meeting and
    the person linked to the place to trace (HMICFRS: a 15-year-old found at an RSO's address)."""
    if not hits or state.status is EpisodeStatus.CLOSED:
        return
    ctx = _Ctx(state=state, policy=policy, now=now, event=_NO_EVENT, effects=Effects())
    for hit in hits:
        if any(
            h.postcode_key == hit.postcode_key and h.reference == hit.reference
            for h in state.location_hits
        ):
            continue
        state.location_hits.append(
            LocationHit(
                postcode_key=hit.postcode_key,
                category=hit.category,
                reference=hit.reference,
                event_id=event_id,
            )
        )
        state.add_flag(Flag.LOCATION_OF_CONCERN)
        if hit.category in EXPLOITATION_CATEGORIES:
            state.add_flag(Flag.CSE)
        _require_strategy_meeting(ctx, f"location of concern ({hit.category})", now)
        _add(
            ctx,
            K.LINKED_PERSON_RESOLUTION,
            now,
            oid=f"{K.LINKED_PERSON_RESOLUTION.value}:{hit.reference}",
            subject=hit.reference,
            reason=f"person linked to a location of concern ({hit.category})",
        )
        _information_review(ctx, "location of concern")
    _reconcile_risk(ctx)


class _NoEvent(EventBase):
    pass


_NO_EVENT = _NoEvent(
    id="-", source="mispers", subject="-", time=dt.datetime.max.replace(tzinfo=dt.UTC)
)


# --- time -------------------------------------------------------------------------------------


def advance(state: EpisodeState, policy: Policy, now: dt.datetime) -> list[Alert]:
    """Everything time brings by `now`: time-triggered obligations, then escalation alerts."""
    if state.alert_lifecycle:
        alert_lifecycle.resolve_settled(state, now)
    if state.status is EpisodeStatus.CLOSED or not state.reported:
        return []
    trigger = _missing_trigger_at(state, policy)
    if trigger is not None and now >= trigger:
        ctx = _Ctx(state=state, policy=policy, now=now, event=_NO_EVENT, effects=Effects())
        hours = (trigger - (state.reported_at or trigger)).total_seconds() / 3600
        _require_strategy_meeting(ctx, f"missing for more than {hours:g} hours", trigger)
        state.missing_trigger_done = True
    assert state.risk is not None
    interval = policy.escalation_interval.for_level(state.risk.level)
    if state.alert_lifecycle:
        alert_lifecycle.expire_acks(state, now)
    raised: list[Alert] = []
    for ob in state.outstanding():
        raised += ladder.escalate(
            ob, episode_id=state.episode_id, now=now, interval=interval, ranks=policy.ranks
        )
    state.alerts.extend(raised)
    if state.alert_lifecycle:
        alert_lifecycle.raised(state, raised)
    return raised


def next_wakeup(state: EpisodeState, policy: Policy) -> dt.datetime | None:
    """The next instant `advance` has work to do; None when nothing is scheduled."""
    if state.status is EpisodeStatus.CLOSED:
        return None
    times = [o.next_escalation_at for o in state.outstanding() if o.next_escalation_at]
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


# --- helpers ----------------------------------------------------------------------------------


def _add(
    ctx: _Ctx,
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
    delta = due if due is not None else _due_delta(ctx.policy, state, kind, oid)
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


def _due_delta(policy: Policy, state: EpisodeState, kind: ObligationKind, oid: str) -> dt.timedelta:
    assert state.risk is not None
    level = state.risk.level
    if kind is K.RISK_REVIEW:
        if oid.startswith(INFO_REVIEW):
            return policy.risk.new_information_review
        return _review_step(policy, level, _review_number(oid))[1]
    rule = policy.rule(kind)
    if rule.looked_after_due is not None and state.looked_after:
        return min(rule.looked_after_due, rule.due.for_level(level))
    return rule.due.for_level(level)


def _is_periodic(ob: Obligation) -> bool:
    return ob.kind is K.RISK_REVIEW and not ob.id.startswith(INFO_REVIEW)


def _review_number(oid: str) -> int:
    return int(oid.rsplit(":", 1)[1])


def _review_step(policy: Policy, level: RiskLevel, number: int) -> tuple[Rank, dt.timedelta]:
    """Review `number` (1-based) of the periodic schedule: (reviewer rank, time from report)."""
    schedule = policy.risk_reviews.for_level(level)
    steps = schedule.steps
    if number <= len(steps):
        step = steps[number - 1]
        return step.rank, step.after
    return steps[-1].rank, steps[-1].after + schedule.every * (number - len(steps))


def _schedule_periodic_review(ctx: _Ctx, number: int) -> None:
    state = ctx.state
    assert state.risk is not None and state.reported_at is not None
    rank, offset = _review_step(ctx.policy, state.risk.level, number)
    due_at = state.reported_at + offset
    if due_at <= ctx.now:
        due_at = ctx.now + ctx.policy.risk_reviews.for_level(state.risk.level).every
    _add(
        ctx,
        K.RISK_REVIEW,
        state.reported_at,
        oid=f"{PERIODIC_REVIEW}:{number}",
        owner=rank,
        due=due_at - state.reported_at,
        reason=f"periodic review {number} while missing",
    )


def _information_review(ctx: _Ctx, why: str) -> None:
    """New information calls for the grade to be looked at again (APP)."""
    state = ctx.state
    if state.status is EpisodeStatus.CLOSED:
        return
    pending = [o for o in state.outstanding() if o.id.startswith(INFO_REVIEW)]
    if pending:
        pending[0].reason = f"{pending[0].reason}; {why}"
        return
    number = 1 + sum(1 for o in state.obligations if o.id.startswith(INFO_REVIEW))
    _add(
        ctx,
        K.RISK_REVIEW,
        min(ctx.now, ctx.at),
        oid=f"{INFO_REVIEW}:{number}",
        owner=ctx.policy.risk.new_information_reviewer,
        reason=f"new information: {why}",
    )


def _require_strategy_meeting(
    ctx: _Ctx, why: str, anchor: dt.datetime, due: dt.timedelta | None = None
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
    _add(
        ctx,
        K.STRATEGY_MEETING,
        min(anchor, ctx.now),
        oid=f"{K.STRATEGY_MEETING.value}:{number}",
        due=due,
        reason=why,
    )


def _queue_location(ctx: _Ctx, postcode: str) -> None:
    key = postcode_key(postcode)
    if key:
        ctx.effects.location_checks.append(LocationCheck(postcode_key=key, event_id=ctx.event.id))


def _check_companions(ctx: _Ctx, persons: list[str], how: str) -> None:
    concern = [
        p.person_ref
        for p in ctx.state.linked_persons
        if p.person_ref in persons and p.relation in PERSON_OF_CONCERN_RELATIONS
    ]
    if concern:
        ctx.state.add_flag(Flag.PERSON_OF_CONCERN)
        _information_review(ctx, f"{how} a person of concern")
        _reconcile_risk(ctx)
    elif persons:
        _information_review(ctx, f"{how} other people")


def _person(state: EpisodeState, ref: str) -> LinkedPerson | None:
    return next((p for p in state.linked_persons if p.person_ref == ref), None)


def _meet(
    ctx: _Ctx, ob: Obligation, by_event: str | None = None, at: dt.datetime | None = None
) -> None:
    ob.status = ObligationStatus.MET
    ob.met_at = at or ctx.at
    ob.met_by_event = by_event or ctx.event.id
    ob.next_escalation_at = None


def _meet_kind(
    ctx: _Ctx,
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
        _meet(ctx, ob, by_event=by_event, at=at)
    return bool(matching)


def _lapse(ob: Obligation, reason: str, now: dt.datetime) -> None:
    ob.status = ObligationStatus.LAPSED
    ob.closed_reason = reason
    ob.met_at = now
    ob.next_escalation_at = None


def _rank_index(policy: Policy, rank: Rank) -> int:
    return policy.ranks.index(rank) if rank in policy.ranks else -1


def _set_level(ctx: _Ctx, level: RiskLevel) -> None:
    """Change the grade; raising it brings open deadlines forward to the new level's figures."""
    state = ctx.state
    assert state.risk is not None
    previous = state.risk.level
    state.risk.level = level
    if level > previous:
        _recompute_deadlines(ctx)


def _recompute_deadlines(ctx: _Ctx) -> None:
    state = ctx.state
    assert state.risk is not None
    interval = ctx.policy.escalation_interval.for_level(state.risk.level)
    for ob in state.outstanding():
        if ob.kind is K.RISK_REVIEW and ob.id.startswith(INFO_REVIEW):
            continue
        if ob.kind is K.RISK_REVIEW:
            rank, offset = _review_step(ctx.policy, state.risk.level, _review_number(ob.id))
            new_due = ob.anchor_at + offset
            if new_due < ob.due_at:
                ob.owner = rank
        else:
            new_due = ob.anchor_at + _due_delta(ctx.policy, state, ob.kind, ob.id)
        ladder.next_escalation_after_deadline_change(ob, new_due, ctx.now, interval)


def _reconcile_risk(ctx: _Ctx) -> None:
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
                event_id=None if ctx.event is _NO_EVENT else ctx.event.id,
            )
        )
        _set_level(ctx, floor)


def _brief(ob: Obligation) -> dict[str, Any]:
    return {
        "id": ob.id,
        "kind": ob.kind.value,
        "due_at": ob.due_at.isoformat(),
        "status": ob.status.value,
    }
