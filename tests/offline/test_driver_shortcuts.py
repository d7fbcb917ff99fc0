"""The offline driver's shortcuts for a year of episodes: each must give the answers the rules
give without it, or a simulation would no longer be faithful to the workflow."""

from __future__ import annotations

import datetime as dt

from mispers.api.validation import EVENT_ADAPTER
from mispers.domain import episode as rules
from mispers.offline import ChildRecords, Recorded, run_episode
from mispers.offline.synth import SynthEpisode, synthesize
from mispers.policy import Policy

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
END = START + dt.timedelta(days=30)
REPORTED = "mispers.episode.reported"


def _stream(ep: SynthEpisode) -> list[Recorded]:
    return [
        Recorded.as_it_happened(
            EVENT_ADAPTER.validate_python({k: v for k, v in e.items() if k != "specversion"})
        )
        for e in ep.events
    ]


def test_leaving_the_steps_off_the_alerts_changes_nothing_else(policy: Policy) -> None:
    """A simulation keeps no lifecycle steps on its alerts: the rules must not read them."""
    kept, dropped = ChildRecords(), ChildRecords()
    steps_seen = 0
    for ep in synthesize(60, 30, 5, policy, START):
        stream = _stream(ep)
        full, lean = (
            run_episode(ep.episode_id, stream, policy, until=END, records=r, alert_steps=steps)
            for r, steps in ((kept, True), (dropped, False))
        )
        steps_seen += sum(len(a.steps) for a in full.state.alerts)
        assert all(a.steps == [] for a in lean.state.alerts)
        with_steps = full.state.model_dump()
        for alert in with_steps["alerts"]:
            alert["steps"] = []
        assert lean.state.model_dump() == with_steps
        assert [a.model_dump(exclude={"steps"}) for a in lean.alerts] == [
            a.model_dump(exclude={"steps"}) for a in full.alerts
        ]
    assert steps_seen > 0, "no alert had a step: nothing was compared"


def test_advancing_and_asking_the_next_wake_at_once_answers_as_the_two_calls(
    policy: Policy,
) -> None:
    """The driver asks both at each timer with the outstanding obligations listed once; the
    workflow asks `advance`, then `next_wakeup`. One state is driven by each, side by side."""
    ticks = 0
    for ep in synthesize(12, 30, 9, policy, START):
        stream = _stream(ep)
        reported = next(r for r in stream if getattr(r.event, "type", "") == REPORTED)
        paired = run_episode(ep.episode_id, [reported], policy)
        single = run_episode(ep.episode_id, [reported], policy)
        horizon = reported.recorded_at + dt.timedelta(days=2)
        wake = rules.next_wakeup(single.state, policy)
        while wake is not None and wake < horizon:
            raised, next_wake = rules.advance_and_next_wakeup(paired.state, policy, wake)
            assert raised == rules.advance(single.state, policy, wake)
            wake = rules.next_wakeup(single.state, policy)
            assert next_wake == wake
            ticks += 1
        assert paired.state.model_dump() == single.state.model_dump()
    assert ticks > 100


def test_the_driver_knows_its_next_wake_without_asking_the_rules(policy: Policy) -> None:
    """The driver keeps the next wake from its last tick (every event is followed by one)."""
    records = ChildRecords()
    for ep in synthesize(40, 30, 13, policy, START):
        run = run_episode(ep.episode_id, [], policy, records=records)
        for item in sorted(_stream(ep), key=lambda r: r.recorded_at):
            run.wake_until(item.recorded_at, inclusive=False)
            run.event(item)
            assert run.next_wake == rules.next_wakeup(run.state, policy)
        run.wake_until(END, inclusive=True)
        assert run.next_wake == rules.next_wakeup(run.state, policy)
