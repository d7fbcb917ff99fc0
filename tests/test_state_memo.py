"""A detail read comes from the state the episode keeps in its memo (no worker, no replay): it
must be the state the `state` query answers, field by field, after every event, after timers,
across continue-as-new, once closed and when every task replays the history first; and a
state too large for the memo is answered by the query."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.testing import WorkflowEnvironment

from mispers.config import Settings
from mispers.domain import state_memo
from mispers.domain.messages import EPISODE_WORKFLOW, EpisodeInput, episode_workflow_id
from mispers.domain.state import EpisodeState
from mispers.engine.client import (
    episodes_query,
    get_episode_state,
    list_episodes,
    query_episode_state,
    read_state_memo,
)
from mispers.policy import PinnedPolicy
from testkit.receivers import webhook_receiver
from tests.conftest import eventually
from tests.harness import STARTED, EpisodeDriver, terminate_running
from worker import build_worker

pytestmark = pytest.mark.integration


@pytest.fixture
async def driver(
    ts_env: WorkflowEnvironment, pinned: PinnedPolicy, tmp_path: Path
) -> AsyncIterator[EpisodeDriver]:
    queue = f"memo-{uuid.uuid4().hex[:8]}"
    with webhook_receiver() as hook:
        settings = Settings(data_dir=tmp_path, alert_webhook_url=hook.url)
        async with build_worker(ts_env.client, settings, task_queue=queue):
            yield EpisodeDriver(ts_env, pinned, queue, f"E-{uuid.uuid4().hex[:10]}")
            await terminate_running(ts_env, STARTED)


@pytest.fixture
async def uncached_driver(
    ts_env: WorkflowEnvironment, pinned: PinnedPolicy, tmp_path: Path
) -> AsyncIterator[EpisodeDriver]:
    """A worker that caches no workflow: every task replays the whole history first, as a wake
    does when its episode has left a full cache."""
    queue = f"memo-nocache-{uuid.uuid4().hex[:8]}"
    with webhook_receiver() as hook:
        settings = Settings(data_dir=tmp_path, alert_webhook_url=hook.url)
        async with build_worker(ts_env.client, settings, task_queue=queue, max_cached_workflows=0):
            yield EpisodeDriver(ts_env, pinned, queue, f"E-{uuid.uuid4().hex[:10]}")
            await terminate_running(ts_env, STARTED)


@pytest.fixture
async def dev_driver(
    dev_env: WorkflowEnvironment, pinned: PinnedPolicy, tmp_path: Path
) -> AsyncIterator[EpisodeDriver]:
    """On the dev server: a run that continues as new with a child-record sync in flight
    leaves that activity to the time-skipping server's clock (its completion is refused)."""
    queue = f"memo-{uuid.uuid4().hex[:8]}"
    with webhook_receiver() as hook:
        settings = Settings(data_dir=tmp_path, alert_webhook_url=hook.url)
        async with build_worker(dev_env.client, settings, task_queue=queue):
            yield EpisodeDriver(
                dev_env,
                pinned,
                queue,
                f"E-{uuid.uuid4().hex[:10]}",
                child_ref=f"C-{uuid.uuid4().hex[:6]}",
            )


async def memo_state(d: EpisodeDriver) -> EpisodeState | None:
    packed = await read_state_memo(d.client, d.episode_id)
    return state_memo.unpack(packed) if isinstance(packed, str) else None


async def sent(d: EpisodeDriver, kind: str, data: dict[str, Any] | None = None) -> EpisodeState:
    """The memo holds the event as soon as its Update returns (the Update is answered in the
    workflow task that upserts the memo): stale by at most the task in progress. Then, once
    the work the event started (record sync, deliveries) is done, memo and query agree."""
    outcome = await d.send(kind, data)
    assert outcome.status == "accepted"
    kept = await memo_state(d)
    assert kept is not None
    assert outcome.event_id in [e.event_id for e in kept.timeline], kind
    return await settles_same(d)


async def settles_same(d: EpisodeDriver) -> EpisodeState:
    """Memo and query, field by field, once no task is in progress (after a time skip the
    timers' tasks may still be running); the API's read is the memo's."""

    async def reads() -> tuple[EpisodeState | None, EpisodeState | None, EpisodeState | None]:
        return (
            await memo_state(d),
            await query_episode_state(d.client, d.episode_id),
            await get_episode_state(d.client, d.episode_id),
        )

    kept, asked, _read = await eventually(
        reads, lambda r: r[0] is not None and r[0] == r[1] == r[2]
    )
    assert kept is not None and asked is not None
    for field in EpisodeState.model_fields:
        assert getattr(kept, field) == getattr(asked, field), field
    return kept


async def test_memo_read_equals_the_query_through_a_whole_episode(driver: EpisodeDriver) -> None:
    d = driver
    first = await sent(d, "episode.reported")
    assert first.reported and first.status.value == "missing"
    await sent(d, "enquiry.recorded")
    await sent(d, "social_services.contacted")
    await d.skip(hours=8, minutes=30)  # escalations raise alerts from timers
    raised = (await settles_same(d)).alerts
    assert raised, "the missed review raised alerts"
    acked = await sent(d, "alert.acknowledged", {"alert_id": raised[0].alert_id, "by": "INSP-9"})
    assert acked.alerts[0].acknowledged_by == "INSP-9"
    await sent(d, "risk.assessed", {"level": "medium", "rank": "inspector", "assessed_by": "I-9"})
    await d.close()
    await d.client.get_workflow_handle(episode_workflow_id(d.episode_id)).result()
    closed = await settles_same(d)
    assert closed.status.value == "closed" and closed.closed_at is not None


async def test_memo_stays_the_state_when_every_task_replays_first(
    uncached_driver: EpisodeDriver,
) -> None:
    """As a wake does when its episode has left a full cache: the task replays every past
    task's memo upsert (matched, never sent), then upserts what it changed itself."""
    d = uncached_driver
    await sent(d, "episode.reported")
    await sent(d, "enquiry.recorded")
    await d.skip(hours=8, minutes=30)
    raised = (await settles_same(d)).alerts
    assert raised, "the missed review raised alerts"
    await sent(d, "alert.acknowledged", {"alert_id": raised[0].alert_id, "by": "INSP-9"})
    await sent(d, "social_services.contacted")
    await d.close()
    await d.client.get_workflow_handle(episode_workflow_id(d.episode_id)).result()
    closed = await settles_same(d)
    assert closed.status.value == "closed"


async def test_memo_follows_the_episode_across_continue_as_new(
    dev_driver: EpisodeDriver,
) -> None:
    d = dev_driver
    first = await d.client.start_workflow(
        EPISODE_WORKFLOW,
        EpisodeInput(episode_id=d.episode_id, policy=d.pinned, continue_as_new_at_history=20),
        id=episode_workflow_id(d.episode_id),
        task_queue=d.task_queue,
    )
    await sent(d, "episode.reported")
    await sent(d, "enquiry.recorded")
    await sent(d, "social_services.contacted")
    await sent(d, "linked_person.identified", {"person_ref": "P-1"})

    async def first_run_status() -> WorkflowExecutionStatus.ValueType:
        described = await d.client.workflow_service.describe_workflow_execution(
            DescribeWorkflowExecutionRequest(
                namespace=d.client.namespace,
                execution=WorkflowExecution(workflow_id=first.id, run_id=first.result_run_id or ""),
            )
        )
        return described.workflow_execution_info.status

    # The loop continues as new in a task of its own after the last event's answer.
    await eventually(
        first_run_status,
        lambda s: s == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW,
        within=30,
    )
    await settles_same(d)
    # Both runs are in the visibility index; the list and the count show the episode once.
    runs = f"WorkflowId = '{first.id}'"
    await eventually(lambda: d.client.count_workflows(runs), lambda c: c.count >= 2, within=30)
    listed = await list_episodes(d.client, episodes_query(child_ref=d.child_ref, open_only=True))
    assert [e.episode_id for e in listed.episodes] == [d.episode_id]
    await d.close()
    closed = await settles_same(d)
    assert closed.status.value == "closed"
    assert [e.type for e in closed.timeline][:1] == ["mispers.episode.reported"]


async def test_a_state_too_large_for_the_memo_is_answered_by_the_query(
    driver: EpisodeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = driver
    await d.send("episode.reported")
    assert await memo_state(d) is not None
    monkeypatch.setattr(state_memo, "MEMO_BUDGET_BYTES", 16)
    await d.send("enquiry.recorded")
    assert await memo_state(d) is None, "a state over the budget leaves the memo"
    read = await get_episode_state(d.client, d.episode_id)
    asked = await query_episode_state(d.client, d.episode_id)
    assert read is not None and read == asked
    assert [e.type for e in read.timeline] == [
        "mispers.episode.reported",
        "mispers.enquiry.recorded",
    ]
