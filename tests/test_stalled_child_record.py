"""A child record that cannot be reached must not hold up an episode's deadlines.

The record's workflow sits on a task queue no worker polls for 48 policy hours, so every
child-record sync of the episode waits (heartbeating, retried at its timeout). Meanwhile the
episode's deadlines fall due, it escalates, and it continues as new several times (a low
history limit forces it): each continue-as-new carries the sync in flight into the next run
rather than waiting for it. Every alert the rules owe for the window is raised on time, and
once the record's worker is back the sync completes.

The time-skipping server cannot skip while an activity is in flight (it holds the clock while
one runs), so the window passes at a time scale: 48 policy hours are 48 s of server time. And a
run that continues as new with an activity in flight leaves that hold on the server for good
(the activity's completion is refused: its run has completed), so this test has a
time-skipping server of its own rather than the shared one."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from mispers.config import Settings
from mispers.domain import episode as rules
from mispers.domain.events import EventBase
from mispers.domain.locations import parse_register
from mispers.domain.messages import EpisodeInput, child_workflow_id, episode_workflow_id
from mispers.domain.state import Alert, EpisodeState
from mispers.engine.client import submit_event
from mispers.offline.driver import ChildRecords, recorded_stream, run_episode
from mispers.policy import PinnedPolicy, Policy
from testkit.factories import event
from testkit.receivers import webhook_receiver
from tests.conftest import eventually, register_search_attributes, start_time_skipping_server
from tests.harness import STARTED, EpisodeDriver, terminate_running
from worker import build_worker
from workflows.child_record import ChildRecord, ChildRecordInput
from workflows.episode import MissingChildEpisode

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SCALE = 3600.0  # one policy hour is one second of server time
WINDOW = dt.timedelta(hours=48)
CONTINUE_AS_NEW_AT = 120  # history events: several runs within the window
# An alert is on time when raised within this much server time of falling due: a workflow
# task's latency on a loaded machine, far below the window's 48 s.
ON_TIME = dt.timedelta(seconds=2)


def owed_alerts(
    pinned: PinnedPolicy, episode_id: str, reported: EventBase, until: dt.datetime
) -> list[Alert]:
    """What the rules owe by `until`, stepping through every wake-up as the workflow does."""
    policy = pinned.policy
    state = rules.new_state(episode_id, pinned.version_label)
    rules.apply_event(state, reported, policy, reported.time)
    owed: list[Alert] = []
    wake = rules.next_wakeup(state, policy)
    while wake is not None and wake <= until:
        owed += rules.advance(state, policy, wake)
        wake = rules.next_wakeup(state, policy)
    return owed


@pytest.fixture
async def own_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_time_skipping_server()
    async with env:
        await register_search_attributes(env.client)
        yield env


async def test_every_alert_is_raised_on_time_while_the_child_record_cannot_be_reached(
    own_env: WorkflowEnvironment, policy: Policy, tmp_path: Path
) -> None:
    ts_env = own_env
    client = ts_env.client
    pinned = PinnedPolicy.pin(policy, time_scale=SCALE)
    episode_id = f"ST-{uuid.uuid4().hex[:10]}"
    child = f"CH-{uuid.uuid4().hex[:6]}"
    queue = f"stall-{uuid.uuid4().hex[:8]}"
    record_queue = f"{queue}-record"  # nobody polls it until the window is over
    STARTED.extend([episode_workflow_id(episode_id), child_workflow_id(child)])
    with webhook_receiver() as hook:
        settings = Settings(data_dir=tmp_path, alert_webhook_url=hook.url)
        async with build_worker(client, settings, task_queue=queue):
            await client.start_workflow(
                ChildRecord.run,
                ChildRecordInput(child_ref=child),
                id=child_workflow_id(child),
                task_queue=record_queue,
            )
            first = await client.start_workflow(
                MissingChildEpisode.run,
                EpisodeInput(
                    episode_id=episode_id,
                    policy=pinned,
                    continue_as_new_at_history=CONTINUE_AS_NEW_AT,
                ),
                id=episode_workflow_id(episode_id),
                task_queue=queue,
            )
            now = await ts_env.get_current_time()
            reported = event(
                "episode.reported",
                episode_id,
                now,
                {"child": {"child_ref": child}, "last_seen_at": now.isoformat()},
            )
            await submit_event(client, reported, pinned, queue)  # joins the running episode
            d = EpisodeDriver(ts_env, pinned, queue, episode_id, child_ref=child)
            end = reported.time + WINDOW / SCALE
            while await d.now() < end:  # short sleeps: one sleep call may last 30 s at most
                await d.skip(seconds=2)

            owed = owed_alerts(pinned, episode_id, reported, end)

            def all_raised(seen: EpisodeState) -> bool:
                return {a.alert_id for a in owed} <= {a.alert_id for a in seen.alerts}

            # A timer due just before `end` has fired but its task may still be running.
            with contextlib.suppress(AssertionError):
                await eventually(d.state, all_raised, within=20)
            state = await d.state()
            assert not state.repeat.known, "the record answered: the window proves nothing"
            assert len(owed) >= 20, "the window should bring deadlines and escalations"
            raised = {a.alert_id: a for a in state.alerts}
            missing = [a.alert_id for a in owed if a.alert_id not in raised]
            assert not missing, f"owed but not raised: {missing}"
            late = {
                a.alert_id: raised[a.alert_id].raised_at - a.scheduled_at
                for a in owed
                if raised[a.alert_id].raised_at - a.scheduled_at > ON_TIME
            }
            assert not late, f"raised late: {late}"
            assert all(raised[a.alert_id].scheduled_at == a.scheduled_at for a in owed)
            history = await client.get_workflow_handle(
                episode_workflow_id(episode_id)
            ).fetch_history()
            started = history.events[0].workflow_execution_started_event_attributes
            assert started.continued_execution_run_id, "the episode never continued as new"
            assert started.continued_execution_run_id != first.result_run_id, "only once"

            await eventually(hook.alert_ids, lambda ids: {a.alert_id for a in owed} <= ids)

            # The record's worker is back: the sync carried from run to run completes.
            async with Worker(client, task_queue=record_queue, workflows=[ChildRecord]):
                known = await eventually(d.state, lambda s: s.repeat.known, within=60)
                assert known.repeat.episodes_30d == 1
                await terminate_running(client, STARTED)


REGISTER = "postcode,category,reference\nN1 9GU,registered_sex_offender,RSO-7\n"
# A sighting's deadlines at high risk fall within hours: the information review (1 h), the
# first high-risk review (2 h) and their escalations every 30 min.
LOCATION_WINDOW = dt.timedelta(hours=4)


class UnreachableRecords(ChildRecords):
    """The child's record as the episode sees it in the test: it never answers."""

    def sync(self, state: EpisodeState, policy: Policy, now: dt.datetime) -> None:
        return None


async def test_a_location_of_concern_is_flagged_on_time_while_the_child_record_cannot_be_reached(
    own_env: WorkflowEnvironment, policy: Policy, tmp_path: Path
) -> None:
    """Register look-ups and child-record syncs run in lanes of their own: the sighting's
    look-up does not queue behind the report's sync, which never completes. The sighting is
    flagged at once, and every alert the rules owe for it (derived by the offline driver from
    the events at the instants the episode recorded them) is raised on time."""
    ts_env = own_env
    client = ts_env.client
    pinned = PinnedPolicy.pin(policy, time_scale=SCALE)
    episode_id = f"SL-{uuid.uuid4().hex[:10]}"
    child = f"CH-{uuid.uuid4().hex[:6]}"
    queue = f"stall-{uuid.uuid4().hex[:8]}"
    register = tmp_path / "locations.csv"
    register.write_text(REGISTER)
    STARTED.extend([episode_workflow_id(episode_id), child_workflow_id(child)])
    with webhook_receiver() as hook:
        settings = Settings(
            data_dir=tmp_path, alert_webhook_url=hook.url, locations_of_concern=register
        )
        async with build_worker(client, settings, task_queue=queue):
            await client.start_workflow(
                ChildRecord.run,
                ChildRecordInput(child_ref=child),
                id=child_workflow_id(child),
                task_queue=f"{queue}-record",  # nobody polls it
            )
            d = EpisodeDriver(ts_env, pinned, queue, episode_id, child_ref=child)
            await d.send("episode.reported")
            await d.send(
                "sighting.reported",
                {"location": {"description": "a flat", "postcode": "N1 9GU"}},
            )
            state = await eventually(d.state, lambda s: "location_of_concern" in s.flags)
            sighted = next(e for e in state.timeline if e.type == "mispers.sighting.reported")
            assert state.location_hits[0].event_id == sighted.event_id
            end = sighted.recorded_at + LOCATION_WINDOW / SCALE
            while await d.now() < end:  # the sync in flight holds the clock: real time passes
                await d.skip(seconds=1)

            state = await d.state()
            assert not state.repeat.known, "the record answered: the test proves nothing"
            assert state.risk is not None and state.risk.level.value == "high"
            # Read once the window is over: an alert due in its last ON_TIME may still be on its
            # way, and one due before must be in.
            checked_until = end - ON_TIME
            entries = parse_register(REGISTER, "register")
            stream = recorded_stream(state)
            owed = run_episode(
                episode_id,
                stream,
                pinned.policy,
                until=checked_until,
                records=UnreachableRecords(),
                lookup=lambda key: entries.get(key, []),
            ).alerts
            unflagged = run_episode(
                episode_id,
                stream,
                pinned.policy,
                until=checked_until,
                records=UnreachableRecords(),
            ).alerts
            assert {a.alert_id for a in owed} > {a.alert_id for a in unflagged}, (
                "the location of concern should bring alerts of its own in the window"
            )
            raised = {a.alert_id: a for a in state.alerts}
            missing = [a.alert_id for a in owed if a.alert_id not in raised]
            assert not missing, f"owed but not raised: {missing}"
            assert all(raised[a.alert_id].rank == a.rank for a in owed)
            late = {
                a.alert_id: raised[a.alert_id].raised_at - a.scheduled_at
                for a in owed
                if raised[a.alert_id].raised_at - a.scheduled_at > ON_TIME
            }
            assert not late, f"raised late: {late}"
            await eventually(hook.alert_ids, lambda ids: {a.alert_id for a in owed} <= ids)
            # The sync is still in flight: this test's own server goes with it, untouched.
