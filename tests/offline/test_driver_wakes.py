"""The offline driver stepped at the instants a workflow ran: what a late timer changes, and
what it does not. The fault drill judges every alert this way (bench/drill.py)."""

from __future__ import annotations

import datetime as dt

from mispers.domain import episode as rules
from mispers.offline import Recorded, run_episode
from mispers.offline.driver import recorded_stream
from mispers.policy import Policy
from testkit.factories import event

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def _stream(*events: tuple[str, dt.timedelta, dict[str, object]]) -> list[Recorded]:
    return [
        Recorded(
            event=event(kind, "E-1", T0 + after, data, event_id=f"ev-{n}"), recorded_at=T0 + after
        )
        for n, (kind, after, data) in enumerate(events)
    ]


def test_an_event_recorded_while_a_due_timer_waits_comes_after_its_alert(policy: Policy) -> None:
    """Systems checks fall due an hour after a medium report. Run on time, the rules alert the
    sergeant; run late (the workflow's next task after the checks were recorded), the missed
    deadline is still alerted, as at the instant it fell due, before the checks are applied
    (the workflow's handler does the same), and the checks then resolve it."""
    stream = _stream(
        ("episode.reported", dt.timedelta(0), {}),
        ("enquiry.recorded", 1.5 * HOUR, {"kind": "systems_checked"}),
    )
    until = T0 + 1.6 * HOUR
    on_time = run_episode("E-1", stream, policy, until=until)
    late = run_episode("E-1", stream, policy, until=until, wakes=[T0, T0 + 1.5 * HOUR])
    for run in (on_time, late):
        alert = next(a for a in run.alerts if a.alert_id == "E-1:systems_checks:L1")
        assert alert.raised_at == T0 + HOUR
        assert alert.state.value == "resolved"
    assert late.state.model_dump() == on_time.state.model_dump()


def test_alerts_raised_at_the_instants_the_workflow_ran(policy: Policy) -> None:
    """Given the instants the workflow ran, each alert carries the instant it was raised at;
    one that fell due between two of them is raised at the second, scheduled as due."""
    stream = _stream(("episode.reported", dt.timedelta(0), {}))
    wake = T0 + 1.25 * HOUR
    run = run_episode("E-1", stream, policy, until=T0 + 2 * HOUR, wakes=[T0, wake])
    checks = next(a for a in run.alerts if a.alert_id == "E-1:systems_checks:L1")
    assert checks.raised_at == wake
    assert checks.scheduled_at == T0 + HOUR
    assert all(a.raised_at in {T0, wake} for a in run.alerts)


def test_the_recorded_stream_is_read_back_from_the_timeline(policy: Policy) -> None:
    """An episode's timeline gives back its events at the instants it recorded them, in the
    order it recorded them, whatever their own times say."""
    state = rules.new_state("E-1", "test")
    late_report = event("episode.reported", "E-1", T0, event_id="ev-a")
    earlier_sighting = event("sighting.reported", "E-1", T0 - HOUR, event_id="ev-b")
    for n, item in enumerate([late_report, earlier_sighting]):
        rules.apply_event(state, item, policy, T0 + n * HOUR)
    stream = recorded_stream(state)
    assert [r.event.id for r in stream] == ["ev-a", "ev-b"]
    assert [r.recorded_at for r in stream] == [T0, T0 + HOUR]
    assert stream[0].event == late_report


def test_the_recorded_stream_leaves_out_the_alert_steps_mispers_wrote(policy: Policy) -> None:
    """An overdue step puts Mispers' own alert entries into the timeline; reading the stream
    back gives the events alone, so a replay of it does not post results as if they were
    events."""
    stream = _stream(("episode.reported", dt.timedelta(0), {}))
    run = run_episode("E-1", stream, policy, until=T0 + 3 * HOUR)
    sources = {entry.source for entry in run.state.timeline}
    assert "mispers" in sources and len(sources) > 1
    assert [r.event.id for r in recorded_stream(run.state)] == ["ev-0"]
