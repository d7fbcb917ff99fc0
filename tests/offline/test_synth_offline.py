"""The synthetic stream and the offline driver: the file alone brings the driver to the state
the simulation reached, and the shapes follow the published figures they cite."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from mispers.api.validation import EVENT_ADAPTER
from mispers.domain.alert_lifecycle import SYSTEM_SOURCE
from mispers.domain.types import ObligationStatus
from mispers.offline import ChildRecords, Recorded, run_episode
from mispers.offline.synth import synthesize
from mispers.policy import Policy

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_the_written_events_bring_the_driver_to_the_simulated_state(policy: Policy) -> None:
    episodes = list(synthesize(60, 30, 7, policy, START))
    end = START + dt.timedelta(days=30)
    records = ChildRecords()
    for ep in episodes:
        events = [
            EVENT_ADAPTER.validate_python({k: v for k, v in e.items() if k != "specversion"})
            for e in ep.events
        ]
        again = run_episode(
            ep.episode_id,
            [Recorded.as_it_happened(e) for e in events],
            policy,
            until=end if ep.state.status.value != "closed" else None,
            records=records,
            alert_steps_in_timeline=False,  # as synth drives them
        )
        assert again.refused == []
        assert again.state.model_dump() == ep.state.model_dump()
        assert [a.alert_id for a in again.alerts] == [a.alert_id for a in ep.run.alerts]


def test_the_synthetic_year_has_the_published_shape(policy: Policy) -> None:
    episodes = list(synthesize(600, 365, 3, policy, START))
    assert len(episodes) == 600
    found = [e.state for e in episodes if e.state.found_at and e.state.reported_at]
    hours = [(s.found_at - s.reported_at).total_seconds() / 3600 for s in found]  # type: ignore[operator]
    within_day = sum(h <= 24 for h in hours) / len(hours)
    over_week = sum(h > 168 for h in hours) / len(hours)
    assert 0.70 <= within_day <= 0.85  # NCA: over 75% within 24 hours
    assert over_week <= 0.05  # NCA: about 2% over a week
    per_child = Counter(e.state.child_ref for e in episodes)
    repeats = 1 - len(per_child) / len(episodes)
    assert 0.5 <= repeats <= 0.8  # 65% of child incidents are repeats
    looked_after = sum(e.state.looked_after for e in episodes) / len(episodes)
    assert 0.3 <= looked_after <= 0.5
    statuses = Counter(o.status for e in episodes for o in e.state.obligations)
    assert statuses[ObligationStatus.MET] > statuses[ObligationStatus.WAIVED] > 0
    assert any(e.state.alerts for e in episodes)
    assert any(a.acknowledged_at for e in episodes for a in e.state.alerts)


def test_leaving_the_alert_steps_out_of_the_timeline_changes_nothing_else(policy: Policy) -> None:
    """The simulation and the synthetic year drive episodes without the alert steps in their
    timelines: the rules must not read them, so everything else comes out the same."""
    end = START + dt.timedelta(days=30)
    with_steps, without = ChildRecords(), ChildRecords()
    steps_seen = 0
    for ep in synthesize(60, 30, 11, policy, START):
        stream = [
            Recorded.as_it_happened(
                EVENT_ADAPTER.validate_python({k: v for k, v in e.items() if k != "specversion"})
            )
            for e in ep.events
        ]
        runs = [
            run_episode(
                ep.episode_id,
                stream,
                policy,
                until=end,
                records=records,
                alert_steps_in_timeline=kept,
            )
            for records, kept in ((with_steps, True), (without, False))
        ]
        full, lean = (r.state.model_dump() for r in runs)
        kept_steps = [e for e in full["timeline"] if e["source"] == SYSTEM_SOURCE]
        steps_seen += len(kept_steps)
        full["timeline"] = [e for e in full["timeline"] if e["source"] != SYSTEM_SOURCE]
        assert lean == full
        assert runs[0].alerts == runs[1].alerts
    assert steps_seen > 0, "no alert step was ever left out: nothing was compared"
