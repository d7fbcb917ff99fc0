"""The alert lifecycle as pure rules: no Temporal, the clock is the test's."""

from __future__ import annotations

from mispers.domain import alert_lifecycle as lifecycle
from mispers.domain import episode as rules
from mispers.domain.events import Actor
from mispers.domain.refusals import EventRefused
from mispers.domain.state import Recipient
from mispers.domain.types import AlertState, Rank, Role
from testkit.factories import event
from tests.unit.rules_kit import POLICY, Episode

L1 = "E-1:systems_checks:L1"
L2 = "E-1:systems_checks:L2"


def overdue() -> Episode:
    """A medium-risk episode whose systems checks (1 h, an officer's) went to the sergeant."""
    ep = Episode()
    ep.state.alert_lifecycle = True
    ep.send("episode.reported", {"initial_risk": "medium"})
    ep.advance(hours=1)
    assert [s.transition for s in lifecycle.drain(ep.state)] == [AlertState.TRIGGERED]
    return ep


def ack(ep: Episode, alert_id: str, by: str, role: Role | None = Role.SUPERVISOR) -> None:
    ev = event("alert.acknowledged", "E-1", ep.now, {"alert_id": alert_id, "by": by})
    if role is not None:
        ev = ev.model_copy(update={"actor": Actor(subject=by, role=role)})
    rules.check_event(ep.state, ev, POLICY, ep.now)
    rules.apply_event(ep.state, ev, POLICY, ep.now)


def test_ranks_of_acknowledgers_stand_in_for_a_rank_claim() -> None:
    assert lifecycle.acknowledger_rank(Actor(subject="p", role=Role.OFFICER)) is Rank.OFFICER
    assert lifecycle.acknowledger_rank(Actor(subject="s", role=Role.SUPERVISOR)) is Rank.SERGEANT
    assert lifecycle.acknowledger_rank(Actor(subject="cad", role=Role.SYSTEM)) is None
    assert lifecycle.acknowledger_rank(None) is None
    assert lifecycle.pauses(POLICY.ranks, Rank.SERGEANT, Rank.SERGEANT)
    assert not lifecycle.pauses(POLICY.ranks, Rank.OFFICER, Rank.INSPECTOR)
    assert lifecycle.pauses(POLICY.ranks, None, Rank.SUPERINTENDENT)


def test_an_acknowledgement_pauses_escalation_until_it_lapses() -> None:
    ep = overdue()
    ep.advance(minutes=30)
    ack(ep, L1, "SGT-1")
    alert = ep.state.alerts[0]
    expires = ep.now + POLICY.ack_timeout.medium
    assert alert.state is AlertState.ACKNOWLEDGED and alert.ack_expires_at == expires
    assert rules.next_wakeup(ep.state, POLICY) == expires
    assert lifecycle.is_repeat_ack(ep.state, L1, "SGT-1")
    assert not lifecycle.is_repeat_ack(ep.state, L1, "SGT-2")
    # Without the acknowledgement the inspector would be paged 2 h after the deadline.
    assert ep.advance(minutes=90) == []
    raised = ep.advance(minutes=31)
    assert [a.alert_id for a in raised] == [L2] and raised[0].scheduled_at == expires
    steps = lifecycle.drain(ep.state)
    assert [(s.transition, s.alert.alert_id, s.notify, s.reason) for s in steps] == [
        (AlertState.ACKNOWLEDGED, L1, None, None),
        (AlertState.TRIGGERED, L1, "SGT-1", "ack_timeout"),
        (AlertState.TRIGGERED, L2, None, None),
    ]
    assert ep.state.alerts[0].state is AlertState.TRIGGERED
    assert ep.state.alerts[0].ack_timeouts == 1
    assert [(s.transition.value, s.by, s.reason) for s in ep.state.alerts[0].steps] == [
        ("triggered", None, None),
        ("acknowledged", "SGT-1", None),
        ("triggered", "SGT-1", "ack_timeout"),
    ]
    assert ep.state.alerts[0].steps[-1].at == expires


def test_met_obligation_resolves_every_alert_of_it_once_and_for_good() -> None:
    ep = overdue()
    ack(ep, L1, "SGT-1")
    ep.advance(minutes=1)
    ep.send("enquiry.recorded")
    ep.advance(minutes=1)
    ep.advance(hours=10)
    steps = [s for s in lifecycle.drain(ep.state) if s.alert.alert_id == L1]
    assert [s.transition for s in steps] == [AlertState.ACKNOWLEDGED, AlertState.RESOLVED]
    assert ep.state.alerts[0].resolved_at == ep.state.obligation("systems_checks").met_at  # type: ignore[union-attr]
    assert [a.alert_id for a in ep.state.alerts if a.obligation_id == "systems_checks"] == [L1]
    try:
        ack(ep, L1, "SGT-2")
    except EventRefused as refused:
        assert refused.refusal.code == "alert_resolved"
        assert refused.refusal.details["state"] == "resolved"
    else:
        raise AssertionError("a resolved alert was acknowledged")


def test_a_lower_rank_is_recorded_but_does_not_replace_or_pause() -> None:
    ep = overdue()
    ack(ep, L1, "PC-1", Role.OFFICER)  # a constable on a sergeant's page
    alert = ep.state.alerts[0]
    assert alert.state is AlertState.ACKNOWLEDGED and not alert.ack_pauses_escalation
    assert alert.ack_expires_at is None
    ack(ep, L1, "SGT-1")  # the sergeant takes it: now it pauses
    assert alert.acknowledged_by == "SGT-1" and alert.ack_pauses_escalation
    ack(ep, L1, "PC-2", Role.OFFICER)  # beside a standing acknowledgement: timeline only
    assert alert.acknowledged_by == "SGT-1"
    assert sum(e.type.endswith("acknowledged") for e in ep.state.timeline) == 3


def test_without_the_lifecycle_an_acknowledgement_changes_nothing_else() -> None:
    """Episodes that began before it (no `workflow.patched` marker) replay as they ran."""
    ep = Episode()
    ep.send("episode.reported", {"initial_risk": "medium"})
    ep.advance(hours=1)
    ack(ep, L1, "SGT-1")
    alert = ep.state.alerts[0]
    assert alert.acknowledged_by == "SGT-1" and alert.state is AlertState.TRIGGERED
    assert alert.ack_expires_at is None and ep.state.alert_outbox == []
    assert [a.alert_id for a in ep.advance(hours=2)] == [L2]


def timeline_steps(ep: Episode) -> list[tuple[str, str, str | None]]:
    return [
        (e.type, e.event_id, e.actor)
        for e in ep.state.timeline
        if e.type.startswith("mispers.alert.")
    ]


def test_every_step_is_in_the_timeline_once_and_an_acknowledgement_only_as_its_event() -> None:
    ep = Episode()
    ep.state.alert_lifecycle = ep.state.alert_timeline = True
    ep.send("episode.reported", {"initial_risk": "medium"})
    ep.advance(hours=1)
    lifecycle.record_recipient(
        ep.state,
        L1,
        Recipient(person_id="SGT-ON", email="sgt.on@force.test"),
        "https://x/ack?token=t",
        False,
        paged_for=ep.state.alerts[0].model_copy(),
    )
    ack(ep, L1, "SGT-1")
    expires = ep.state.alerts[0].ack_expires_at
    ep.advance(hours=2, minutes=1)  # lapsed: re-triggered, the inspector alerted
    ep.send("enquiry.recorded")  # met: both resolved
    ep.advance(minutes=1)
    ack_id = next(e.event_id for e in ep.state.timeline if e.type == "mispers.alert.acknowledged")
    assert timeline_steps(ep) == [
        ("mispers.alert.triggered", f"{L1}:triggered", "mispers"),
        ("mispers.alert.acknowledged", ack_id, "SGT-1"),
        ("mispers.alert.retriggered", f"{L1}:retriggered:1", "mispers"),
        ("mispers.alert.triggered", f"{L2}:triggered", "mispers"),
        ("mispers.alert.resolved", f"{L1}:resolved", "mispers"),
        ("mispers.alert.resolved", f"{L2}:resolved", "mispers"),
    ]
    ids = [e.event_id for e in ep.state.timeline]
    assert len(ids) == len(set(ids))
    entries = {e.event_id: e for e in ep.state.timeline}
    first = entries[f"{L1}:triggered"]
    assert first.source == "mispers" and first.posted_by is None
    assert first.data == {
        "alert_id": L1,
        "obligation_id": "systems_checks",
        "kind": "systems_checks",
        "rank": "sergeant",
        "escalation_level": 1,
        "recipient": "SGT-ON",  # filled in when the rota answered
        "unstaffed": False,
    }
    again = entries[f"{L1}:retriggered:1"]
    assert again.time == expires
    assert again.data["reason"] == "ack_timeout" and again.data["acknowledged_by"] == "SGT-1"
    done = entries[f"{L1}:resolved"]
    assert done.data["obligation_status"] == "met"
    assert done.time == ep.state.obligation("systems_checks").met_at  # type: ignore[union-attr]
    assert [e.time for e in ep.state.timeline] == sorted(e.time for e in ep.state.timeline)
    assert "sgt.on@force.test" not in str([e.data for e in ep.state.timeline])


def test_episodes_without_the_marker_keep_alert_steps_out_of_the_timeline() -> None:
    ep = overdue()  # the lifecycle, but not its timeline entries (an older run replaying)
    ack(ep, L1, "SGT-1")
    ep.advance(hours=3)
    assert [t for t, _, _ in timeline_steps(ep)] == ["mispers.alert.acknowledged"]


def test_a_waived_obligation_resolves_its_alerts_and_the_timeline_says_so() -> None:
    ep = Episode()
    ep.state.alert_lifecycle = ep.state.alert_timeline = True
    ep.send("episode.reported", {"initial_risk": "medium"})
    ep.advance(hours=1)
    ack(ep, L1, "SGT-1")
    ep.send("child.found", {"found_at": ep.now.isoformat()})
    waivers = [{"obligation_id": o.id, "reason": "closing"} for o in ep.state.outstanding()]
    ep.send("closure.approved", {"waivers": waivers})
    ep.advance(minutes=1)
    alert = ep.state.alerts[0]
    assert alert.state is AlertState.RESOLVED and alert.ack_expires_at is None
    resolved = next(e for e in ep.state.timeline if e.event_id == f"{L1}:resolved")
    assert resolved.data["obligation_status"] == "waived"
    assert ep.advance(hours=12) == [] and lifecycle.next_expiry(ep.state) is None
