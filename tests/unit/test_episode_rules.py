"""The episode rules without Temporal: obligations, deadlines, the closure gate, risk."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mispers.domain import episode as rules
from mispers.domain.events import Actor
from mispers.domain.refusals import EventRefused
from mispers.domain.types import EpisodeStatus, ObligationStatus, RiskLevel, Role
from testkit.factories import event
from tests.unit.rules_kit import POLICY, T0, Episode

H = dt.timedelta(hours=1)


def reported(**data: object) -> Episode:
    ep = Episode()
    ep.send("episode.reported", dict(data))
    return ep


def test_report_creates_the_initial_obligations_from_the_policy() -> None:
    ep = reported()
    assert ep.state.status is EpisodeStatus.MISSING
    assert ep.ids() == {
        "systems_checks",
        "supervisor_review",
        "social_services_notified_missing",
        "pnc_circulated",
        "risk_review:1",
    }
    assert ep.ob("systems_checks").due_at == T0 + H
    assert ep.ob("supervisor_review").due_at == T0 + 4 * H
    assert ep.ob("social_services_notified_missing").due_at == T0 + 4 * H
    assert ep.ob("pnc_circulated").due_at == T0 + 48 * H
    review = ep.ob("risk_review:1")
    assert review.due_at == T0 + 12 * H and review.owner.value == "inspector"
    assert ep.state.risk is not None and ep.state.risk.confirmed is False


def test_high_risk_and_looked_after_tighten_deadlines_and_notify_both_authorities() -> None:
    ep = reported(
        initial_risk="high",
        child={"looked_after": True, "responsible_authority": "Kent", "host_authority": "Lambeth"},
    )
    assert ep.ob("systems_checks").due_at == T0 + dt.timedelta(minutes=30)
    assert ep.ob("supervisor_review").due_at == T0 + H
    assert ep.ob("social_services_notified_missing:responsible").subject == "Kent"
    assert ep.ob("social_services_notified_missing:host").due_at == T0 + H
    ep.send("social_services.contacted", {"authority": "kent"})
    assert ep.ob("social_services_notified_missing:responsible").status is ObligationStatus.MET
    assert ep.ob("social_services_notified_missing:host").status is ObligationStatus.OPEN


def test_looked_after_child_notification_is_due_in_an_hour_even_at_medium() -> None:
    ep = reported(child={"looked_after": True})
    assert ep.ob("social_services_notified_missing:responsible").due_at == T0 + H


def test_obligations_are_met_by_the_matching_events_and_record_which() -> None:
    ep = reported()
    ep.now += dt.timedelta(minutes=20)
    ep.send("enquiry.recorded", event_id="sys-1")
    checks = ep.ob("systems_checks")
    assert checks.status is ObligationStatus.MET and checks.met_by_event == "sys-1"
    assert checks.met_at == T0 + dt.timedelta(minutes=20)
    assert ep.state.risk is not None and ep.state.risk.confirmed
    ep.send("enquiry.recorded", {"kind": "pnc_circulated"})
    assert ep.ob("pnc_circulated").status is ObligationStatus.MET
    ep.send("social_services.contacted", {"direction": "inbound"})
    assert ep.ob("social_services_notified_missing").status is ObligationStatus.OPEN
    ep.send("social_services.contacted")
    assert ep.ob("social_services_notified_missing").status is ObligationStatus.MET
    assert len(ep.state.communications) == 2


def test_communications_log_keeps_every_contact_with_its_details() -> None:
    ep = reported()
    ep.send("social_services.contacted", {"purpose": "information_request", "method": "email"})
    comm = ep.state.communications[0]
    assert (comm.direction, comm.authority, comm.method, comm.purpose, comm.officer_id) == (
        "outbound",
        "Lambeth",
        "email",
        "information_request",
        "PC-101",
    )


def test_a_sergeant_assessment_meets_the_supervisor_review_not_an_inspector_review() -> None:
    ep = reported()
    ep.send("risk.assessed", {"level": "medium", "rank": "sergeant"})
    assert ep.ob("supervisor_review").status is ObligationStatus.MET
    assert ep.ob("risk_review:1").status is ObligationStatus.OPEN
    ep.send("risk.assessed", {"level": "medium", "rank": "inspector"})
    assert ep.ob("risk_review:1").status is ObligationStatus.MET
    nxt = ep.ob("risk_review:2")
    assert nxt.owner.value == "superintendent" and nxt.due_at == T0 + 24 * H


def test_found_not_seen_in_person_stays_missing() -> None:
    ep = reported()
    ep.send("child.found", {"seen_in_person": False})
    assert ep.state.status is EpisodeStatus.MISSING
    assert "safe_and_well_check" not in ep.ids()


def test_found_creates_return_obligations_and_lapses_periodic_reviews() -> None:
    ep = reported()
    ep.now += 2 * H
    ep.send("child.found")
    assert ep.state.status is EpisodeStatus.FOUND
    found = T0 + 2 * H
    assert ep.ob("safe_and_well_check").due_at == found + 24 * H
    assert ep.ob("social_services_notified_return").due_at == found + 24 * H
    assert ep.ob("return_interview").due_at == found + 72 * H
    review = ep.ob("risk_review:1")
    assert review.status is ObligationStatus.LAPSED and "child found" in (
        review.closed_reason or ""
    )


def test_safe_and_well_not_in_person_does_not_meet_the_check() -> None:
    ep = reported()
    ep.send("child.found")
    ep.send("safe_and_well.completed", {"in_person": False})
    assert ep.ob("safe_and_well_check").status is ObligationStatus.OPEN
    ep.send("safe_and_well.completed")
    assert ep.ob("safe_and_well_check").status is ObligationStatus.MET


def test_events_arriving_before_the_found_event_still_count() -> None:
    ep = reported()
    ep.now += 3 * H
    ep.send("safe_and_well.completed", event_id="sw-1")
    ep.send("social_services.contacted", {"purpose": "return_notification"})
    ep.send("child.found", {"found_at": (T0 + H).isoformat()}, at=T0 + H)
    assert ep.ob("safe_and_well_check").met_by_event == "sw-1"
    assert ep.ob("social_services_notified_return").status is ObligationStatus.MET
    times = [e.time for e in ep.state.timeline]
    assert times == sorted(times)
    assert ep.state.timeline[1].type == "mispers.child.found"


def test_closure_gate_refuses_while_missing_then_lists_open_obligations() -> None:
    ep = reported()
    with pytest.raises(EventRefused) as missing:
        ep.check("closure.requested")
    assert missing.value.refusal.code == "child_not_found"
    ep.send("child.found")
    with pytest.raises(EventRefused) as refused:
        ep.check("closure.requested")
    assert refused.value.refusal.code == "open_obligations"
    listed = {o["id"] for o in refused.value.refusal.details["open_obligations"]}
    assert listed == ep.open_ids()


def test_closure_requested_then_approved_when_everything_is_met() -> None:
    ep = reported()
    for kind, data in [
        ("enquiry.recorded", {}),
        ("enquiry.recorded", {"kind": "pnc_circulated"}),
        ("social_services.contacted", {}),
        ("risk.assessed", {"level": "medium", "rank": "inspector"}),
        ("child.found", {}),
        ("safe_and_well.completed", {}),
        ("social_services.contacted", {"purpose": "return_notification"}),
        ("return_interview.completed", {"outcome": "declined", "rationale": "child refused"}),
    ]:
        ep.send(kind, data)
    assert ep.open_ids() == set()
    ep.send("closure.requested")
    assert ep.open_ids() == {"closure_review"}
    with pytest.raises(EventRefused, match="already been requested"):
        ep.check("closure.requested")
    ep.send("closure.approved")
    assert ep.state.status is EpisodeStatus.CLOSED
    assert ep.ob("closure_review").status is ObligationStatus.MET
    with pytest.raises(EventRefused) as closed:
        ep.check("enquiry.recorded")
    assert closed.value.refusal.code == "episode_closed"


def test_closure_approval_waivers_must_be_reasoned_and_name_open_obligations() -> None:
    ep = reported()
    ep.send("child.found")
    with pytest.raises(EventRefused) as unknown:
        ep.check("closure.approved", {"waivers": [{"obligation_id": "nope", "reason": "r"}]})
    assert unknown.value.refusal.code == "unknown_waiver"
    waivers = [{"obligation_id": oid, "reason": "not needed: x"} for oid in sorted(ep.open_ids())]
    ep.send("closure.approved", {"waivers": waivers})
    waived = [o for o in ep.state.obligations if o.status is ObligationStatus.WAIVED]
    assert {o.id for o in waived} == {w["obligation_id"] for w in waivers}
    assert all(o.closed_reason == "not needed: x" and o.waived_by == "SGT-7" for o in waived)


def test_only_a_supervisor_token_may_approve_closure() -> None:
    ep = reported()
    ep.send("child.found")
    approval = event("closure.approved", "E-1", ep.now).model_copy(
        update={"actor": Actor(subject="pc-1", role=Role.OFFICER)}
    )
    with pytest.raises(EventRefused) as refused:
        rules.check_event(ep.state, approval, POLICY, ep.now)
    assert refused.value.refusal.code == "supervisor_only"


def test_acknowledging_an_alert_records_it_and_does_not_meet_the_obligation() -> None:
    ep = reported()
    raised = ep.advance(hours=1)
    assert [a.alert_id for a in raised] == ["E-1:systems_checks:L1"]
    with pytest.raises(EventRefused, match="no alert"):
        ep.check("alert.acknowledged", {"alert_id": "E-1:nope:L1"})
    ep.send("alert.acknowledged", {"alert_id": "E-1:systems_checks:L1", "by": "SGT-1"})
    assert ep.state.alerts[0].acknowledged_by == "SGT-1"
    assert ep.ob("systems_checks").status is ObligationStatus.OVERDUE


def test_reported_twice_with_another_event_is_refused() -> None:
    ep = reported()
    with pytest.raises(EventRefused) as again:
        ep.check("episode.reported")
    assert again.value.refusal.code == "already_reported"


def test_missing_for_72_hours_calls_a_strategy_meeting_then_weekly() -> None:
    ep = reported()
    ep.advance(hours=71)
    assert not any(o.kind.value == "strategy_meeting" for o in ep.state.obligations)
    assert rules.next_wakeup(ep.state, POLICY) is not None
    ep.advance(hours=1)
    meeting = ep.ob("strategy_meeting:1")
    assert meeting.due_at == T0 + 144 * H and "missing for more than 72 hours" in (
        meeting.reason or ""
    )
    ep.send("strategy_meeting.held")
    assert ep.ob("strategy_meeting:2").due_at == ep.now + dt.timedelta(days=7)


def test_next_wakeup_is_the_earliest_escalation() -> None:
    ep = reported()
    assert rules.next_wakeup(ep.state, POLICY) == T0 + H  # systems checks
    ep.send("enquiry.recorded")
    assert rules.next_wakeup(ep.state, POLICY) == T0 + 4 * H


@settings(max_examples=150, deadline=None)
@given(
    initial=st.sampled_from(["medium", "high"]),
    raise_after_minutes=st.integers(min_value=0, max_value=72 * 60),
    new_level=st.sampled_from(["medium", "high"]),
)
def test_raising_risk_never_delays_a_deadline(
    initial: str, raise_after_minutes: int, new_level: str
) -> None:
    ep = reported(initial_risk=initial)
    ep.advance(minutes=raise_after_minutes)
    before = {o.id: (o.due_at, o.next_escalation_at) for o in ep.state.outstanding()}
    ep.send("risk.assessed", {"level": new_level, "rank": "officer", "assessed_by": "PC-1"})
    for ob in ep.state.outstanding():
        if ob.id in before:
            due, nxt = before[ob.id]
            assert ob.due_at <= due
            if nxt is not None and ob.next_escalation_at is not None:
                assert ob.next_escalation_at <= nxt


def test_raising_to_high_brings_open_deadlines_forward() -> None:
    ep = reported()
    ep.send("risk.assessed", {"level": "high", "rank": "officer", "assessed_by": "PC-1"})
    assert ep.ob("systems_checks").due_at == T0 + dt.timedelta(minutes=30)
    assert ep.ob("supervisor_review").due_at == T0 + H
    review = ep.ob("risk_review:1")
    assert review.due_at == T0 + 2 * H


def test_timeline_records_every_event_once_in_time_order() -> None:
    ep = reported()
    ep.now += 2 * H
    ep.send("enquiry.recorded", event_id="late", at=T0 + dt.timedelta(minutes=30))
    ep.send("enquiry.recorded", {"kind": "cctv"}, event_id="now")
    assert [e.event_id for e in ep.state.timeline][1:] == ["late", "now"]
    assert len(ep.state.event_keys) == 3
    # the late systems check still meets the obligation, at the time it happened
    assert ep.ob("systems_checks").met_at == T0 + dt.timedelta(minutes=30)


def test_wrong_subject_is_refused() -> None:
    ep = reported()
    other = event("enquiry.recorded", "E-2", ep.now)
    with pytest.raises(EventRefused, match="does not belong"):
        rules.check_event(ep.state, other, POLICY, ep.now)


def test_risk_levels_are_ordered() -> None:
    assert RiskLevel.VERY_LOW < RiskLevel.LOW < RiskLevel.MEDIUM < RiskLevel.HIGH
    assert max([RiskLevel.LOW, RiskLevel.HIGH, RiskLevel.MEDIUM]) is RiskLevel.HIGH


def test_the_grade_is_provisional_until_the_systems_checks_are_recorded() -> None:
    ep = reported()
    assert ep.state.risk is not None and not ep.state.risk.confirmed
    ep.send("enquiry.recorded", {"kind": "cctv"})
    assert not ep.state.risk.confirmed
    ep.send("enquiry.recorded", {"kind": "systems_checked"})
    assert ep.state.risk.confirmed
    assert ep.ob("systems_checks").status is ObligationStatus.MET


def test_periodic_reviews_while_missing_go_to_inspector_then_superintendent_then_repeat() -> None:
    ep = reported(initial_risk="high")
    first = ep.ob("risk_review:1")
    assert (first.owner.value, first.due_at - T0) == ("inspector", 2 * H)
    ep.send(
        "risk.assessed", {"level": "high", "rank": "inspector", "assessed_by": "I-1"}, at=T0 + H
    )
    second = ep.ob("risk_review:2")
    assert (second.owner.value, second.due_at - T0) == ("superintendent", 6 * H)
    ep.now = T0 + 5 * H
    ep.send("risk.assessed", {"level": "high", "rank": "superintendent", "assessed_by": "S-1"})
    third = ep.ob("risk_review:3")
    assert (third.owner.value, third.due_at - T0) == ("superintendent", 12 * H)


def test_an_event_is_judged_after_the_deadlines_that_passed_before_it() -> None:
    """A timer can reach the workflow after an event that came later: what fell due strictly
    before the event's instant is raised first, what falls due at that very instant is not."""
    ep = reported()
    due = rules.next_wakeup(ep.state, POLICY)
    assert due is not None
    assert rules.advance_before(ep.state, POLICY, due) == []
    assert ep.state.alerts == []

    late = due + dt.timedelta(milliseconds=40)
    raised = rules.advance_before(ep.state, POLICY, late)
    assert raised and all(a.raised_at == due for a in raised)
    assert {a.obligation_id for a in raised} == {
        o.id for o in ep.state.obligations if o.escalation_level
    }
    # raised once: the timer that fires afterwards finds nothing more due
    assert rules.advance(ep.state, POLICY, late) == []
    assert rules.advance_before(ep.state, POLICY, late) == []
