"""Counting in the workers gives the figures counting every alert in one place gives: the
national year's alerts stay where they were raised, and nothing in the comparison changes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from mispers.offline.synth import synthesize
from mispers.policy import Policy, load_policy
from mispers.simulation import run as sim
from mispers.simulation.compare import compare

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAYS = 30
CANDIDATE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "candidate-policy.toml"


def _figures(policy: Policy, keep_alerts: bool, chunk_events: int) -> tuple[dict[str, Any], int]:
    streams = {
        ep.episode_id: [dict(e) for e in ep.events]
        for ep in synthesize(80, DAYS, 11, policy, START)
    }
    groups = sim.group_by_child(streams)
    until = START + dt.timedelta(days=DAYS)
    work = sim.jobs(
        groups, policy, load_policy(CANDIDATE), until, {}, chunk_events, keep_alerts=keep_alerts
    )
    done = sim.run_and_merge(work, 1, lambda _: None)
    done.compared.sort(key=lambda c: c.episode_id)
    kept = sum(len(c.baseline.alerts) + len(c.candidate.alerts) for c in done.compared)
    last = (until - dt.timedelta(days=1)).date()
    # kept: counted here, from every alert sent back; else the workers' tallies, merged
    tallies = None if keep_alerts else (done.baseline, done.candidate)
    return compare(done.compared, START.date(), last, {}, [], "synth", tallies), kept


def test_counts_kept_in_the_workers_give_the_figures_of_every_alert_counted_here(
    policy: Policy,
) -> None:
    everything, kept = _figures(policy, keep_alerts=True, chunk_events=10**9)
    # several jobs, so the tallies are merged as the workers' would be
    tallied, none_kept = _figures(policy, keep_alerts=False, chunk_events=200)
    assert kept > 100 and none_kept == 0
    assert everything["baseline"]["alerts_total"] < everything["candidate"]["alerts_total"]
    assert tallied == everything
