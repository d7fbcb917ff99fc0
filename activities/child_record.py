"""Registering an episode with its child's record (update-with-start on `child-{child_ref}`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from temporalio import activity
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from mispers.domain.child_record import ChildRecordInput
from mispers.domain.messages import (
    CHILD_RECORD_WORKFLOW,
    ChildHistory,
    RegisterEpisodeInput,
    SyncChildRecordInput,
    child_workflow_id,
)

T = TypeVar("T")


class ChildRecordActivities:
    """Holds the worker's client so each call reuses its connection."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn
    async def sync_child_record(self, input: SyncChildRecordInput) -> ChildHistory:
        info = activity.info()
        record_input = ChildRecordInput(child_ref=input.child_ref)
        if input.max_history_events is not None:
            record_input.max_history_events = input.max_history_events
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            CHILD_RECORD_WORKFLOW,
            record_input,
            id=child_workflow_id(input.child_ref),
            task_queue=info.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        # A retry of this activity repeats the same Update id, so the record counts it once.
        update_id = f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"
        call = self._client.execute_update_with_start_workflow(
            "register_episode",
            RegisterEpisodeInput(
                summary=input.summary,
                windows_days=input.windows_days,
                same_location_episodes=input.same_location_episodes,
            ),
            start_workflow_operation=start,
            id=update_id,
            result_type=ChildHistory,
        )
        history: ChildHistory = await while_heartbeating(call)
        return history


async def while_heartbeating(work: Awaitable[T], every: float = 1.0) -> T:
    """Await `work`, heartbeating meanwhile: the call can wait on a busy engine for seconds,
    and a worker killed during it must be noticed at the heartbeat timeout, not the activity's
    start-to-close timeout."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            activity.heartbeat()
    finally:
        task.cancel()  # a no-op once done; stops the call if the activity itself is cancelled
