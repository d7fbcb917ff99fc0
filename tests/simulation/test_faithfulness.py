"""Simulating the baseline policy over episodes that ran in the service reproduces the alerts
those workflows raised: the same ids, ranks and times.

Episodes run through the real workflow on the time-skipping server: synthetic episodes of
several children, one a repeat runaway, one found at a location of concern, escalating to the
top rank, each event posted at its own instant. The closed ones write their analytics
record at close, as in service; the open ones are snapshotted as `mispers export --open` does.
The simulation then reads their streams from that store (without personal data: places and
authorities as pseudonyms, the register put through the same function) and runs them through
the offline driver. Alert times may differ only where the workflow takes an instant from an
activity's completion (a repeat count, a register hit): by the milliseconds the activity took,
allowed up to two seconds, as in the driver's own equivalence test. The service raises an alert
when its timer fires, milliseconds after the instant the rules set (`scheduled_at`); the
simulation raises it at that instant: to the microsecond, but for deadlines that start from an
activity's answer."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from mispers.analytics.record import episode_record
from mispers.analytics.store import open_store
from mispers.config import Settings
from mispers.domain.locations import parse_register
from mispers.offline.synth import SynthEpisode, register_lookup, synthesize
from mispers.policy import PinnedPolicy
from mispers.simulation import run as sim
from mispers.simulation.sources import from_store
from mispers.simulation.stream import pseudonymous_register
from tests.harness import STARTED, terminate_running
from tests.test_offline_equivalence import REGISTER, SLACK, Twin
from worker import build_worker

# steps a repeat count or a register hit can start (or re-time): their instants come from the
# answering activity's completion in the service
FROM_ACTIVITIES = {"strategy_meeting", "exploitation_screening", "risk_review"}
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture
async def served(
    ts_env: WorkflowEnvironment, pinned: PinnedPolicy, tmp_path: Path
) -> AsyncIterator[tuple[Twin, Settings]]:
    register = tmp_path / "locations.csv"
    register.write_text(REGISTER)
    queue = f"sim-{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=tmp_path, locations_of_concern=register)
    async with build_worker(ts_env.client, settings, task_queue=queue):
        yield Twin(ts_env, pinned, queue), settings
        await terminate_running(ts_env, STARTED)


async def test_the_baseline_simulated_raises_the_alerts_the_workflows_raised(
    served: tuple[Twin, Settings], pinned: PinnedPolicy
) -> None:
    twin, settings = served
    run = uuid.uuid4().hex[:6].upper()
    start = (await twin.now()) + dt.timedelta(minutes=5)
    register = parse_register(REGISTER)

    def streams(seed: int) -> list[SynthEpisode]:
        return list(
            synthesize(
                8, 30, seed, pinned.policy, start,
                lookup=register_lookup(register), concern_postcodes=sorted(register),
                prefix=f"SF{run}",
            )
        )  # fmt: skip

    synthetic = next(
        eps
        for eps in map(streams, range(1, 100))
        if len({e.state.child_ref for e in eps}) < len(eps)
        and any(e.state.location_hits for e in eps)
    )
    await twin.play(synthetic)
    until = await twin.now()
    ids = [ep.episode_id for ep in synthetic]
    states = {episode_id: await twin.state(episode_id) for episode_id in ids}
    store = open_store(settings.data_dir, settings.analytics)
    # the open ones as `mispers export --open` snapshots them; the closed wrote theirs at close
    store.write(
        [
            episode_record(s, f"snapshot-{until:%Y%m%dT%H%M%S}", until)
            for s in states.values()
            if s.status.value != "closed"
        ]
    )
    closed = [i for i, s in states.items() if s.status.value == "closed"]
    assert closed and len(closed) < len(ids), "some episodes closed, some still open"

    streams_held = from_store(store)
    assert set(ids) <= set(streams_held.by_episode)
    wanted = {i: streams_held.by_episode[i] for i in ids}
    groups = sim.group_by_child(wanted)
    work = sim.jobs(
        groups, pinned.policy, None, until, pseudonymous_register(register), keep_alerts=True
    )
    simulated = {
        c.episode_id: c.baseline for c in sim.run_and_merge(work, 1, lambda _: None).compared
    }

    compared = exact = 0
    for episode_id, state in states.items():
        raised = [(a.alert_id, a.rank.value) for a in state.alerts]
        again = [(a.alert_id, a.rank) for a in simulated[episode_id].alerts]
        assert raised == again, episode_id
        for alert, sim_alert in zip(state.alerts, simulated[episode_id].alerts, strict=True):
            # the instant the rules set for it; the service raised it when its timer fired
            assert abs(alert.scheduled_at - sim_alert.raised_at) <= SLACK, alert.alert_id
            assert abs(alert.raised_at - sim_alert.raised_at) <= SLACK, alert.alert_id
            if alert.kind.value not in FROM_ACTIVITIES:
                assert alert.scheduled_at == sim_alert.raised_at, alert.alert_id
                exact += 1
        compared += len(raised)
    assert compared >= 20, "enough alerts to compare"
    assert exact >= compared / 3, f"{exact} of {compared} compared to the microsecond"
    ranks = {a.rank.value for s in states.values() for a in s.alerts}
    assert {"sergeant", "inspector", "superintendent"} <= ranks
