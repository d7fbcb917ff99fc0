"""One rules implementation, two drivers: the same event streams through the real workflow (on
the time-skipping server, with its child-record and location activities) and through the
offline driver reach the same obligations, alerts and final state, field by field.

The streams: the scenario the replay histories were recorded from (escalation to the top,
an acknowledgement, a location of concern, a disclosure, a refused closure, waivers) and
synthetic episodes of several children, one of them a repeat runaway. Instants that the
workflow takes from an activity's completion (a repeat count, a register hit) are the event's
instant plus the milliseconds the activity took; the comparison allows two seconds there and
nowhere else is a difference tolerated."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from mispers.api.validation import EVENT_ADAPTER
from mispers.config import Settings
from mispers.domain.events import EventBase
from mispers.domain.locations import parse_register
from mispers.domain.state import EpisodeState
from mispers.engine.client import EventRejected, query_episode_state, submit_event
from mispers.offline import ChildRecords, Recorded, run_episode
from mispers.offline.driver import STREAM_ACTOR
from mispers.offline.synth import SynthEpisode, register_lookup, synthesize
from mispers.policy import PinnedPolicy
from testkit.factories import event, merge
from tests.harness import STARTED, clear_of_timers, terminate_running
from worker import build_worker

pytestmark = pytest.mark.integration

REGISTER = "postcode,category,reference\nN1 9GU,registered_sex_offender,RSO-7\nE8 1AA,other,LOC-2\n"
SLACK = dt.timedelta(seconds=2)
# The states are read this long at most after the instant they are compared at.
QUIET = dt.timedelta(minutes=1)
# What a delivery learns from the rota and the API's signing key, not from the rules (on the
# alerts, and on the timeline's entries of the alerts' steps).
DELIVERY_FACTS = {"recipient", "unstaffed", "ack_url"}


@dataclass
class Sent:
    event: EventBase
    at: dt.datetime
    accepted: bool


@dataclass
class Twin:
    """Sends events to the workflow and keeps what it sent, for the offline driver."""

    env: WorkflowEnvironment
    pinned: PinnedPolicy
    queue: str
    sent: dict[str, list[Sent]] = field(default_factory=dict)

    async def now(self) -> dt.datetime:
        return await self.env.get_current_time()

    async def at(self, when: dt.datetime) -> None:
        delta = when - await self.now()
        if delta > dt.timedelta(0):
            await self.env.sleep(delta)

    async def send(self, ev: EventBase) -> bool:
        return await self.send_stamped(ev.subject, lambda _: ev)

    async def send_stamped(self, subject: str, make: Callable[[dt.datetime], EventBase]) -> bool:
        """`make` builds the event at the instant it is sent, once the timers due about then
        have been handled."""
        STARTED.append(f"episode-{subject}")
        await clear_of_timers(self.env, [subject], self.pinned.policy)
        at = await self.now()
        ev = make(at)
        try:
            await submit_event(self.env.client, ev, self.pinned, self.queue)
            accepted = True
        except EventRejected:
            accepted = False
        self.sent.setdefault(ev.subject, []).append(Sent(ev, at, accepted))
        return accepted

    async def play(self, episodes: Iterable[SynthEpisode]) -> None:
        """Every event of `episodes`, all interleaved, each at its own instant on the server's
        clock, posted as the offline driver judges a stream from a file (the API would stamp
        a token's actor); the workflow must accept each."""
        timeline = sorted(
            (
                EVENT_ADAPTER.validate_python(
                    {k: v for k, v in e.items() if k != "specversion"}
                    | {"actor": STREAM_ACTOR.model_dump(mode="json")}
                )
                for ep in episodes
                for e in ep.events
            ),
            key=lambda ev: ev.time,
        )
        for ev in timeline:
            await self.at(ev.time)
            assert await self.send(ev), f"the workflow refused {ev.type} of {ev.subject}"

    async def state(self, episode_id: str) -> EpisodeState:
        state = await query_episode_state(self.env.client, episode_id)
        assert state is not None
        return state

    async def quiet_instant(self, episode_ids: Iterable[str]) -> dt.datetime:
        """An instant on the server's clock with every timer due by then handled and none due
        within QUIET after: the instant to compare the workflows with the driver at. Between
        skips the clock runs at real pace, so a timer due just after the last event could fire
        (or not yet) while the states are read."""
        return await clear_of_timers(self.env, episode_ids, self.pinned.policy, guard=QUIET)


@pytest.fixture
async def twin(
    ts_env: WorkflowEnvironment, pinned: PinnedPolicy, tmp_path: Path
) -> AsyncIterator[Twin]:
    register = tmp_path / "locations.csv"
    register.write_text(REGISTER)
    queue = f"eq-{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=tmp_path, locations_of_concern=register)
    async with build_worker(ts_env.client, settings, task_queue=queue):
        yield Twin(ts_env, pinned, queue)
        await terminate_running(ts_env, STARTED)


async def scripted_episode(t: Twin, episode_id: str, child_ref: str) -> None:
    """The scenario of tests/record_histories.py, event by event."""

    async def send(kind: str, data: dict[str, Any] | None = None) -> bool:
        # Stamped once the timers due about now have been handled: a skip can end on the
        # instant an escalation falls due, and an event stamped before that escalation's task
        # ran would sort before the alert in the workflow's timeline (raised when its task ran)
        # and after it in the driver's (raised at the instant it fell due).
        def make(now: dt.datetime) -> EventBase:
            stamp = now.isoformat()
            defaults: dict[str, dict[str, Any]] = {
                "episode.reported": {"child": {"child_ref": child_ref}, "last_seen_at": stamp},
                "child.found": {"found_at": stamp},
                "sighting.reported": {"seen_at": stamp},
            }
            return event(kind, episode_id, now, merge(defaults.get(kind, {}), data or {}))

        return await t.send_stamped(episode_id, make)

    async def skip(**delta: float) -> None:
        await t.env.sleep(dt.timedelta(**delta))

    now = await t.now()
    dob = now.date().replace(year=now.year - 15).isoformat()
    await send("episode.reported", {"child": {"date_of_birth": dob}})
    await send("enquiry.recorded")
    await send("social_services.contacted")
    await skip(hours=8, minutes=30)
    await send("alert.acknowledged", {"alert_id": f"{episode_id}:supervisor_review:L1"})
    await send("risk.assessed", {"level": "medium", "rank": "inspector", "assessed_by": "I-9"})
    await send(
        "sighting.reported",
        {"location": {"description": "a flat", "postcode": "N1 9GU"}, "with_persons": ["P-1"]},
    )
    await send("linked_person.identified", {"person_ref": "P-1"})
    await skip(hours=20)
    await send("child.found")
    await send(
        "safe_and_well.completed",
        {"disclosures": [{"kind": "sexual_activity", "summary": "with an adult"}]},
    )
    await send("social_services.contacted", {"purpose": "return_notification"})
    await skip(hours=30)
    await send("crime.recorded")
    await send("return_interview.completed")
    await send("linked_person.resolved", {"person_ref": "P-1"})
    await send("closure.requested")
    assert not await send("closure.approved")  # refused: obligations open, none waived
    state = await t.state(episode_id)
    waivers = [{"obligation_id": o.id, "reason": "recorded drill"} for o in state.outstanding()]
    assert await send("closure.approved", {"waivers": waivers})


def assert_same(workflow: Any, offline: Any, path: str = "state") -> None:
    if isinstance(workflow, dict):
        assert isinstance(offline, dict), path
        assert sorted(workflow) == sorted(offline), path
        for key in workflow:
            if key in DELIVERY_FACTS and (".alerts[" in path or ".timeline[" in path):
                continue
            assert_same(workflow[key], offline[key], f"{path}.{key}")
    elif isinstance(workflow, list):
        assert isinstance(offline, list) and len(workflow) == len(offline), (
            f"{path}: {len(workflow)} in the workflow, {len(offline)} offline"
        )
        for i, (a, b) in enumerate(zip(workflow, offline, strict=True)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(workflow, dt.datetime):
        assert isinstance(offline, dt.datetime), path
        assert abs(workflow - offline) <= SLACK, f"{path}: {workflow} != {offline}"
    else:
        assert workflow == offline, f"{path}: {workflow!r} != {offline!r}"


async def test_workflow_and_offline_driver_agree_field_by_field(
    twin: Twin, pinned: PinnedPolicy
) -> None:
    run = uuid.uuid4().hex[:6].upper()
    start = (await twin.now()) + dt.timedelta(minutes=5)
    register = parse_register(REGISTER)

    def streams(seed: int) -> list[SynthEpisode]:
        return list(
            synthesize(
                8,
                40,
                seed,
                pinned.policy,
                start,
                lookup=register_lookup(register),
                concern_postcodes=sorted(register),
                prefix=f"EQ{run}",
            )
        )

    # the first seed whose streams hold a repeat child and a location of concern
    synthetic = next(
        eps
        for eps in map(streams, range(1, 100))
        if len({e.state.child_ref for e in eps}) < len(eps)
        and any(e.state.location_hits for e in eps)
    )
    scripted_id = f"EQ{run}-SCRIPTED"
    await scripted_episode(twin, scripted_id, f"EQ{run}-CS")
    await twin.play(synthetic)
    until = await twin.quiet_instant([scripted_id, *(ep.episode_id for ep in synthetic)])

    records = ChildRecords()
    lookup = register_lookup(register)
    compared = 0
    for episode_id in [scripted_id, *(ep.episode_id for ep in synthetic)]:
        state = await twin.state(episode_id)
        recorded = {e.event_id: e.recorded_at for e in state.timeline}
        sent = twin.sent[episode_id]
        stream = [Recorded(s.event, recorded.get(s.event.id, s.at)) for s in sent]
        offline = run_episode(
            episode_id,
            stream,
            pinned.policy,
            policy_version=pinned.version_label,
            until=until if state.status.value != "closed" else None,
            records=records,
            lookup=lookup,
        )
        refused_by_workflow = [s.event.id for s in sent if not s.accepted]
        assert [event_id for event_id, _ in offline.refused] == refused_by_workflow
        assert_same(state.model_dump(), offline.state.model_dump(), episode_id)
        compared += 1
    assert compared == len(synthetic) + 1
