"""`ChildRecord`: one long-lived workflow per child (`child-{child_ref}`) holding every episode's
summary, so repeat absences are counted across episodes rather than forgotten between them.

Episodes reach it through an activity (update-with-start); it answers at once and is never
the bottleneck of an episode. It continues as new before its history grows large."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from mispers.domain.child_record import (
        DEFAULT_MAX_HISTORY_EVENTS,
        ChildRecordInput,
        ChildRecordState,
        record_episode,
    )
    from mispers.domain.messages import (
        CHILD_RECORD_WORKFLOW,
        ChildHistory,
        RegisterEpisodeInput,
    )

__all__ = ["DEFAULT_MAX_HISTORY_EVENTS", "ChildRecord", "ChildRecordInput"]


@workflow.defn(name=CHILD_RECORD_WORKFLOW)
class ChildRecord:
    @workflow.init
    def __init__(self, input: ChildRecordInput) -> None:
        self._record = input.carried_state or ChildRecordState(child_ref=input.child_ref)
        self._max_events = input.max_history_events

    @workflow.run
    async def run(self, input: ChildRecordInput) -> None:
        await workflow.wait_condition(self._history_is_long)
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._record.continued_as_new += 1
        workflow.continue_as_new(
            ChildRecordInput(
                child_ref=self._record.child_ref,
                carried_state=self._record,
                max_history_events=self._max_events,
            )
        )

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= (
            self._max_events
        )

    @workflow.update(name="register_episode")
    def register_episode(self, input: RegisterEpisodeInput) -> ChildHistory:
        return record_episode(
            self._record, input.summary, input.windows_days, input.same_location_episodes
        )

    @workflow.query(name="state")
    def state(self) -> ChildRecordState:
        return self._record
