"""What an accepted event changes: the timeline, then the handler for its type (`_on_*`)."""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from mispers.domain import alert_lifecycle
from mispers.domain.episode.context import (
    EXPLOITATION_SCREENING_FACTOR,
    INFO_REVIEW,
    PERSON_OF_CONCERN_RELATIONS,
    Ctx,
    Effects,
    K,
    LocationCheck,
)
from mispers.domain.episode.grading import reconcile_risk, set_level
from mispers.domain.episode.obligations import (
    add,
    information_review,
    is_periodic,
    lapse,
    meet,
    meet_kind,
    require_strategy_meeting,
    review_number,
    schedule_periodic_review,
)
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
from mispers.domain.locations import postcode_key
from mispers.domain.people import age_on
from mispers.domain.risk import exploitation_flags, history_phrase
from mispers.domain.state import (
    Communication,
    EpisodeState,
    LinkedPerson,
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
)
from mispers.policy.model import Policy


def apply_event(state: EpisodeState, event: EventBase, policy: Policy, now: dt.datetime) -> Effects:
    """Record an event the rules accepted: timeline, obligations, risk, flags."""
    ctx = Ctx(state=state, policy=policy, now=now, event=event, effects=Effects())
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


def _on_reported(ctx: Ctx, event: EpisodeReported) -> None:
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
    reconcile_risk(ctx)
    anchor = ctx.at
    add(ctx, K.SYSTEMS_CHECKS, anchor)
    add(ctx, K.SUPERVISOR_REVIEW, anchor)
    for oid, authority in _authorities(state, K.SOCIAL_SERVICES_NOTIFIED_MISSING):
        add(ctx, K.SOCIAL_SERVICES_NOTIFIED_MISSING, anchor, oid=oid, subject=authority)
    add(ctx, K.PNC_CIRCULATED, anchor)
    schedule_periodic_review(ctx, 1)
    if state.has_flag(Flag.CSE) or state.has_flag(Flag.CCE):
        require_strategy_meeting(ctx, "exploitation indicator at report", anchor)
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


def _on_assessed(ctx: Ctx, event: RiskAssessed) -> None:
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
    set_level(ctx, data.level)
    for flag in exploitation_flags(data.factors):
        if state.add_flag(flag):
            require_strategy_meeting(ctx, "exploitation indicator recorded", ctx.at)
    reconcile_risk(ctx)
    rank_index = _rank_index(ctx.policy, data.rank)
    for ob in state.outstanding():
        if ob.kind in (K.SUPERVISOR_REVIEW, K.RISK_REVIEW) and rank_index >= _rank_index(
            ctx.policy, ob.owner
        ):
            meet(ctx, ob)
            if is_periodic(ob) and state.status is EpisodeStatus.MISSING:
                schedule_periodic_review(ctx, review_number(ob.id) + 1)
    if EXPLOITATION_SCREENING_FACTOR in data.factors:
        meet_kind(ctx, K.EXPLOITATION_SCREENING)
    ctx.effects.child_sync = True


def _on_contacted(ctx: Ctx, event: SocialServicesContacted) -> None:
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
            meet(ctx, ob)


def _on_enquiry(ctx: Ctx, event: EnquiryRecorded) -> None:
    if event.data.kind == "systems_checked":
        meet_kind(ctx, K.SYSTEMS_CHECKS)
        assert ctx.state.risk is not None
        ctx.state.risk.confirmed = True
        ctx.effects.child_sync = True
    elif event.data.kind == "pnc_circulated":
        meet_kind(ctx, K.PNC_CIRCULATED)


def _on_linked_identified(ctx: Ctx, event: LinkedPersonIdentified) -> None:
    state, data = ctx.state, event.data
    person = _person(state, data.person_ref)
    if person is None:
        person = LinkedPerson(person_ref=data.person_ref, relation=data.relation)
        state.linked_persons.append(person)
    person.relation = data.relation
    person.identified_by_event = event.id
    ob = add(
        ctx,
        K.LINKED_PERSON_RESOLUTION,
        ctx.at,
        oid=f"{K.LINKED_PERSON_RESOLUTION.value}:{data.person_ref}",
        subject=data.person_ref,
        reason=f"linked {data.relation} identified",
    )
    if ob is not None and person.resolved:
        meet(ctx, ob, by_event=person.resolved)
    if data.relation in PERSON_OF_CONCERN_RELATIONS:
        information_review(ctx, f"linked {data.relation} identified")
    if data.location and data.location.postcode:
        _queue_location(ctx, data.location.postcode)


def _on_linked_resolved(ctx: Ctx, event: LinkedPersonResolved) -> None:
    state, data = ctx.state, event.data
    person = _person(state, data.person_ref)
    if person is None:
        person = LinkedPerson(person_ref=data.person_ref, relation="unknown")
        state.linked_persons.append(person)
    person.resolved = event.id
    ob = state.obligation(f"{K.LINKED_PERSON_RESOLUTION.value}:{data.person_ref}")
    if ob is not None and ob.outstanding:
        meet(ctx, ob)


def _on_sighting(ctx: Ctx, event: SightingReported) -> None:
    data = event.data
    _check_companions(ctx, data.with_persons, "sighted with")
    if data.location.postcode:
        _queue_location(ctx, data.location.postcode)


def _on_found(ctx: Ctx, event: ChildFound) -> None:
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
            lapse(ob, "child found: periodic review while missing no longer applies", ctx.now)
        elif ob.kind is K.STRATEGY_MEETING and (ob.reason or "").startswith("missing for"):
            lapse(ob, "child found before the missing-duration strategy meeting", ctx.now)
    add(ctx, K.SAFE_AND_WELL_CHECK, found_at)
    for oid, authority in _authorities(state, K.SOCIAL_SERVICES_NOTIFIED_RETURN):
        add(ctx, K.SOCIAL_SERVICES_NOTIFIED_RETURN, found_at, oid=oid, subject=authority)
    add(ctx, K.RETURN_INTERVIEW, found_at)
    _meet_from_earlier_events(ctx)
    ctx.effects.child_sync = True


def _meet_from_earlier_events(ctx: Ctx) -> None:
    """Events can arrive before the one that creates their obligation (ordering is by `time`,
    not arrival): a safe and well check or return interview already on the record counts."""
    state = ctx.state
    for entry in state.timeline:
        if entry.type == "mispers.safe_and_well.completed" and entry.data.get("in_person"):
            meet_kind(ctx, K.SAFE_AND_WELL_CHECK, by_event=entry.event_id, at=entry.time)
        elif entry.type == "mispers.return_interview.completed":
            meet_kind(ctx, K.RETURN_INTERVIEW, by_event=entry.event_id, at=entry.time)
    for comm in state.communications:
        if comm.direction == "outbound" and comm.purpose == "return_notification":
            for ob in state.outstanding():
                if ob.kind is K.SOCIAL_SERVICES_NOTIFIED_RETURN and (
                    ob.subject is None or _same_authority(ob.subject, comm.authority)
                ):
                    meet(ctx, ob, by_event=comm.event_id, at=comm.at)


def _on_safe_and_well(ctx: Ctx, event: SafeAndWellCompleted) -> None:
    state, data = ctx.state, event.data
    if data.in_person:
        meet_kind(ctx, K.SAFE_AND_WELL_CHECK)
    child = state.child
    assert child is not None
    age = age_on(child.date_of_birth, event.time.date())
    for disclosure in data.disclosures:
        hint = crime_hint(disclosure.kind, age, ctx.policy)
        if disclosure.kind == "exploitation":
            flag = Flag.CCE if disclosure.exploitation_type == "cce" else Flag.CSE
            if state.add_flag(flag):
                require_strategy_meeting(ctx, "exploitation disclosed", ctx.at)
        if hint is None:
            continue
        state.add_flag(Flag.CRIME_DISCLOSED)
        number = 1 + sum(1 for o in state.obligations if o.kind is K.CRIME_RECORDING)
        add(
            ctx,
            K.CRIME_RECORDING,
            ctx.at,
            oid=f"{K.CRIME_RECORDING.value}:{number}",
            reason=hint,
        )
    reconcile_risk(ctx)


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


def _on_return_interview(ctx: Ctx, event: ReturnInterviewCompleted) -> None:
    meet_kind(ctx, K.RETURN_INTERVIEW)


def _on_crime(ctx: Ctx, event: CrimeRecorded) -> None:
    pending = sorted(
        (o for o in ctx.state.outstanding() if o.kind is K.CRIME_RECORDING), key=lambda o: o.due_at
    )
    if pending:
        meet(ctx, pending[0])
        pending[0].subject = event.data.crime_ref


def _on_strategy_meeting(ctx: Ctx, event: StrategyMeetingHeld) -> None:
    met = meet_kind(ctx, K.STRATEGY_MEETING, all_of_kind=True)
    rule = ctx.policy.rule(K.STRATEGY_MEETING)
    if met and ctx.state.status is EpisodeStatus.MISSING and rule.repeat_every:
        require_strategy_meeting(ctx, "weekly while missing", ctx.at, due=rule.repeat_every)


def _on_closure_requested(ctx: Ctx, event: ClosureRequested) -> None:
    ctx.state.closure.requested_at = ctx.at
    ctx.state.closure.requested_by_event = event.id
    add(ctx, K.CLOSURE_REVIEW, ctx.at)


def _on_closure_approved(ctx: Ctx, event: ClosureApproved) -> None:
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
            meet(ctx, ob)
    for ob in state.outstanding():  # anything left (e.g. an information review) lapses
        lapse(ob, "episode closed by a supervisor", ctx.now)
    state.status = EpisodeStatus.CLOSED
    state.closed_at = ctx.now
    state.closure.approved_at = ctx.now
    state.closure.approved_by = data.supervisor_id
    state.closure.rationale = data.rationale
    ctx.effects.child_sync = True


def _on_ack(ctx: Ctx, event: AlertAcknowledged) -> None:
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


_HANDLERS: dict[type[EventBase], Callable[[Ctx, Any], None]] = {
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


def _queue_location(ctx: Ctx, postcode: str) -> None:
    key = postcode_key(postcode)
    if key:
        assert ctx.event is not None  # only an event names a place
        ctx.effects.location_checks.append(LocationCheck(postcode_key=key, event_id=ctx.event.id))


def _check_companions(ctx: Ctx, persons: list[str], how: str) -> None:
    concern = [
        p.person_ref
        for p in ctx.state.linked_persons
        if p.person_ref in persons and p.relation in PERSON_OF_CONCERN_RELATIONS
    ]
    if concern:
        ctx.state.add_flag(Flag.PERSON_OF_CONCERN)
        information_review(ctx, f"{how} a person of concern")
        reconcile_risk(ctx)
    elif persons:
        information_review(ctx, f"{how} other people")


def _person(state: EpisodeState, ref: str) -> LinkedPerson | None:
    return next((p for p in state.linked_persons if p.person_ref == ref), None)


def _rank_index(policy: Policy, rank: Rank) -> int:
    return policy.ranks.index(rank) if rank in policy.ranks else -1
