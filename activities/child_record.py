"""Registering an episode with its child's record (update-with-start on `child-{child_ref}`)."""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from mispers.domain.messages import (
    CHILD_RECORD_WORKFLOW,
    ChildHistory,
    RegisterEpisodeInput,
    SyncChildRecordInput,
    child_workflow_id,
)


class ChildRecordActivities:
    """Holds the worker's client so each call reuses its connection."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn
    async def sync_child_record(self, input: SyncChildRecordInput) -> ChildHistory:
        from workflows.child_record import ChildRecordInput

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
        history: ChildHistory = await self._client.execute_update_with_start_workflow(
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
        return history
