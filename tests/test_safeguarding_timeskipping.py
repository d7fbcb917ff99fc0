"""Safeguarding scenarios across days on the time-skipping server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from mispers.config import Settings
from mispers.domain.child_record import ChildRecordState
from mispers.domain.messages import child_workflow_id
from mispers.domain.types import ObligationStatus, RiskLevel
from mispers.engine.client import EventRejected
from mispers.policy import PinnedPolicy
from testkit.receivers import WebhookReceiver, webhook_receiver
from tests.conftest import eventually
from tests.harness import STARTED, EpisodeDriver, terminate_running
from worker import build_worker
from workflows.child_record import ChildRecord, ChildRecordInput

pytestmark = pytest.mark.integration

REGISTER = "postcode,category,reference\nN1 9GU,registered_sex_offender,RSO-7\n"


@pytest.fixture
async def setup(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[tuple[str, WebhookReceiver]]:
    register = tmp_path / "locations.csv"
    register.write_text(REGISTER)
    with webhook_receiver() as hook:
        queue = f"sg-{uuid.uuid4().hex[:8]}"
        settings = Settings(
            data_dir=tmp_path, alert_webhook_url=hook.url, locations_of_concern=register
        )
        async with build_worker(ts_env.client, settings, task_queue=queue):
            yield queue, hook
            await terminate_running(ts_env, STARTED)


def driver(env: WorkflowEnvironment, pinned: PinnedPolicy, queue: str, child: str) -> EpisodeDriver:
    return EpisodeDriver(env, pinned, queue, f"S-{uuid.uuid4().hex[:10]}", child_ref=child)


async def child_record(client: Client, child_ref: str) -> ChildRecordState:
    handle = client.get_workflow_handle(child_workflow_id(child_ref))
    state: ChildRecordState = await handle.query("state", result_type=ChildRecordState)
    return state


async def test_fourth_episode_in_90_days_is_a_repeat_with_meeting_and_screening(
    ts_env: WorkflowEnvironment, pinned: PinnedPolicy, setup: tuple[str, WebhookReceiver]
) -> None:
    queue, _ = setup
    child = f"CH-{uuid.uuid4().hex[:6]}"
    episodes = []
    for n in range(4):
        d = driver(ts_env, pinned, queue, child)
        await d.send("episode.reported", {"initial_risk": "low"})
        episodes.append(d)
        if n < 3:
            await d.send("child.found", {"location": {"postcode": "SE1 7PB"}})
            await eventually(d.state, lambda s: s.found_postcode_key is not None)
            await d.close()
            await d.skip(days=20)
    latest = episodes[-1]
    state = await eventually(latest.state, lambda s: s.repeat.known)
    assert (state.repeat.episodes_30d, state.repeat.episodes_90d) == (2, 4)
    assert "repeat" in state.flags
    assert state.risk is not None and state.risk.level is RiskLevel.MEDIUM
    assert any("episodes in 90 days" in r for r in state.risk.floor_reasons)
    kinds = {o.kind.value for o in state.outstanding()}
    assert {"strategy_meeting", "exploitation_screening"} <= kinds
    record = await child_record(ts_env.client, child)
    assert [e.episode_id for e in record.episodes] == [d.episode_id for d in episodes]
    assert record.repeat[90] == 4
    # found at the same place in earlier episodes: the place is flagged in the record
    assert record.flagged_locations == ["SE17PB"]
    await latest.send("child.found", {"location": {"postcode": "se1 7pb"}})
    flagged = await eventually(latest.state, lambda s: "repeat_location" in s.flags)
    assert flagged.found_postcode_key == "SE17PB"


async def test_found_at_a_registered_sex_offenders_postcode(
    ts_env: WorkflowEnvironment, pinned: PinnedPolicy, setup: tuple[str, WebhookReceiver]
) -> None:
    queue, _ = setup
    d = driver(ts_env, pinned, queue, f"CH-{uuid.uuid4().hex[:6]}")
    await d.send("episode.reported")
    await d.send("child.found", {"location": {"postcode": "n19gu", "description": "a flat"}})
    state = await eventually(d.state, lambda s: "location_of_concern" in s.flags)
    assert {"cse", "location_of_concern"} <= set(state.flags)
    assert state.risk is not None and state.risk.level is RiskLevel.HIGH
    assert state.location_hits[0].reference == "RSO-7"
    assert state.obligation("linked_person_resolution:RSO-7") is not None
    assert any(o.kind.value == "strategy_meeting" for o in state.outstanding())
    # high risk: the safe and well check is now due within the hour
    sw = state.obligation("safe_and_well_check")
    assert sw is not None and sw.due_at <= (state.found_at or sw.due_at) + __import__(
        "datetime"
    ).timedelta(hours=1)


async def test_fifteen_year_olds_disclosure_leads_to_an_overdue_crime_obligation_that_escalates(
    ts_env: WorkflowEnvironment, pinned: PinnedPolicy, setup: tuple[str, WebhookReceiver]
) -> None:
    queue, hook = setup
    d = driver(ts_env, pinned, queue, f"CH-{uuid.uuid4().hex[:6]}")
    now = await d.now()
    dob = now.date().replace(year=now.year - 15).isoformat()
    await d.send("episode.reported", {"child": {"date_of_birth": dob}})
    await d.send("child.found")
    await d.send(
        "safe_and_well.completed",
        {"disclosures": [{"kind": "sexual_activity", "summary": "with an adult"}]},
    )
    crime = await d.obligation("crime_recording:1")
    assert "sexual activity with a child" in (crime.reason or "")
    await d.skip(hours=25)
    overdue = await d.obligation("crime_recording:1")
    assert overdue.status is ObligationStatus.OVERDUE and overdue.escalation_level >= 2
    first = f"{d.episode_id}:crime_recording:1:L1"
    await eventually(hook.alert_ids, lambda ids: first in ids)
    alert = next(b for b in hook.bodies() if b["alert_id"] == first)
    assert alert["rank"] == "sergeant"
    await d.send("crime.recorded")
    assert (await d.obligation("crime_recording:1")).status is ObligationStatus.MET


async def test_closure_refused_with_an_untraced_suspect(
    ts_env: WorkflowEnvironment, pinned: PinnedPolicy, setup: tuple[str, WebhookReceiver]
) -> None:
    queue, _ = setup
    d = driver(ts_env, pinned, queue, f"CH-{uuid.uuid4().hex[:6]}")
    await d.send("episode.reported")
    await d.send("linked_person.identified", {"person_ref": "SUS-1", "relation": "suspect"})
    await d.send("child.found")
    state = await d.state()
    waivers = [
        {"obligation_id": o.id, "reason": "drill"}
        for o in state.outstanding()
        if o.kind.value != "linked_person_resolution"
    ]
    with pytest.raises(EventRejected) as refused:
        await d.send("closure.approved", {"waivers": waivers})
    assert refused.value.refusal.code == "open_obligations"
    assert [o["id"] for o in refused.value.refusal.details["open_obligations"]] == [
        "linked_person_resolution:SUS-1"
    ]
    await d.send("linked_person.resolved", {"person_ref": "SUS-1", "outcome": "traced_actioned"})
    await d.send("closure.approved", {"waivers": waivers})
    assert (await d.state()).status.value == "closed"


async def test_child_record_survives_continue_as_new_with_counts_intact(
    ts_env: WorkflowEnvironment, pinned: PinnedPolicy, setup: tuple[str, WebhookReceiver]
) -> None:
    queue, _ = setup
    child = f"CH-{uuid.uuid4().hex[:6]}"
    await ts_env.client.start_workflow(
        ChildRecord.run,
        ChildRecordInput(child_ref=child, max_history_events=12),
        id=child_workflow_id(child),
        task_queue=queue,
    )
    ids = []
    for _ in range(5):
        d = driver(ts_env, pinned, queue, child)
        await d.send("episode.reported")
        await eventually(d.state, lambda s: s.repeat.known)
        ids.append(d.episode_id)
        await d.close()
        await d.skip(days=5)
    record = await child_record(ts_env.client, child)
    assert record.continued_as_new >= 1
    assert [e.episode_id for e in record.episodes] == ids
    assert record.repeat[30] == 5 and record.repeat[90] == 5
    last = await d.state()
    assert last.repeat.episodes_30d == 5 and "repeat" in last.flags
    assert last.status.value == "closed"
