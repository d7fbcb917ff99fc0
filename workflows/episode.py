"""`MissingChildEpisode`: one durable workflow per missing-child episode.

It orchestrates and owns the timers; the rules are plain functions in `mispers.domain.episode`.
Events arrive as the `record_event` Update, whose validator refuses what the rules refuse (so a
refusal never reaches the history); one loop sleeps until the next deadline or event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.alerts import (
        DELIVERY_ATTEMPT_TIMEOUT,
        DELIVERY_HEARTBEAT_TIMEOUT,
        AlertActivities,
    )
    from activities.analytics import AnalyticsActivities, ExportRecordInput
    from activities.child_record import ChildRecordActivities
    from activities.locations import LocationActivities
    from mispers.analytics.record import episode_record
    from mispers.domain import alert_lifecycle as lifecycle
    from mispers.domain import episode as rules
    from mispers.domain import state_memo
    from mispers.domain.events import AlertAcknowledged, EventBase
    from mispers.domain.messages import (
        DUPLICATE_ERROR,
        EPISODE_WORKFLOW,
        REFUSED_ERROR,
        AddressAlertsInput,
        AlertBatch,
        AlertDelivery,
        CheckLocationInput,
        DeliverAlertsInput,
        DeliverAlertsOnceInput,
        EpisodeInput,
        EpisodeSummaryForChild,
        Paged,
        RecordEventInput,
        RecordEventResult,
        SyncChildRecordInput,
        event_key,
    )
    from mispers.domain.refusals import EventRefused
    from mispers.domain.state import Alert, EpisodeState, EpisodeSummary
    from mispers.domain.types import AlertState, EpisodeStatus
    from mispers.engine import search_attributes as sa

CHILD_SYNC = "child_sync"
LOCATION_PREFIX = "location:"
IO_TIMEOUT = timedelta(seconds=30)
# A killed worker's activity is retried after this, not after IO_TIMEOUT.
IO_HEARTBEAT = timedelta(seconds=5)
RETRY_FLOOR = timedelta(seconds=1)
# Episodes that reached this marker deliver alerts with a local round first (activities/alerts.py).
LOCAL_ALERT_DELIVERY = "local-alert-delivery"
# ... and check postcodes against the register with a local activity.
LOCAL_LOCATION_CHECK = "local-location-check"
LOCAL_CHECK_TIMEOUT = timedelta(seconds=10)
# ... and skip a child-record sync that would tell the record nothing new.
SKIP_UNCHANGED_SYNC = "skip-unchanged-child-sync"
# ... and queue a child-record sync again when the state changes while one is in flight.
SYNC_AGAIN_AFTER_IN_FLIGHT = "sync-again-after-in-flight"
# ... and write the episode's analytics record when it closes.
ANALYTICS_EXPORT = "analytics-export-on-close"
# A local write; the DuckDB file may be held by another writer for a while.
ANALYTICS_EXPORT_TIMEOUT = timedelta(minutes=1)
# ... and give alerts a lifecycle: acknowledged, re-triggered when an acknowledgement lapses,
# resolved with their obligation; each step sent to the sinks and kept in the memo for listing.
ALERT_LIFECYCLE = "alert-lifecycle"
ALERTS_MEMO = "alerts"
# What the memo keeps, newest first, so its size (and each upsert's history event) stays
# bounded when the top rank is re-alerted for days: the unresolved alerts of each obligation
# (older levels are superseded by the newer ones) and the latest resolved alerts.
MEMO_UNRESOLVED_PER_OBLIGATION = 5
MEMO_RESOLVED_KEPT = 50
# ... and also keep, for each obligation, the newest unresolved alert of each rank and state, so
# every `state:rank` token in `AlertStates` has its alert in the memo: a sergeant paged at the
# first level still finds the alert under "my rank" until it is acknowledged or resolved, however
# many times the top rank has been re-alerted since.
MEMO_KEEPS_EACH_RANK = "memo-keeps-each-rank"
# ... and judge the sender's authority (token role and rank) in the handler as in the validator.
AUTHORITY_FROM_TOKEN = "authority-from-token"
# ... and continue as new without waiting for the child-record sync or register look-up in
# flight: it is carried into the next run (queued again there), so a child record that cannot be
# reached never holds up the loop, its deadlines or its alerts.
CARRY_IO_THROUGH_CONTINUE_AS_NEW = "continue-as-new-carries-io"
# ... and run child-record syncs and register look-ups each in a lane of its own, so a
# location-of-concern check never queues behind a child record that cannot be reached.
IO_LANES_BY_KIND = "io-lanes-by-kind"
# One round over the sinks, each with its own send timeout (activities/alerts.py).
ALERT_ROUND_TIMEOUT = timedelta(seconds=30)
# ... and give the durable delivery a heartbeat timeout longer than one send (it heartbeats
# after each alert) and an attempt long enough for a batch of slow answers.
ALERT_HEARTBEAT_PER_ALERT = "alert-heartbeat-per-alert"
# The durable delivery's timeouts before that marker.
FORMER_DELIVERY_ATTEMPT_TIMEOUT = timedelta(seconds=30)
FORMER_DELIVERY_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
# ... and keep each step an alert takes by itself (triggered, re-triggered, resolved) in the
# episode's timeline, beside the events.
ALERT_STEPS_IN_TIMELINE = "alert-steps-in-timeline"
# ... and address a triggered batch (rota, signed link) in a local activity of its own before
# any sink is tried, recording who was paged whatever the delivery does; every round of the
# delivery then sends to them.
ADDRESS_BEFORE_DELIVERY = "address-alerts-before-delivery"
# ... and fall back to the durable delivery when the local round itself crashes.
LOCAL_ROUND_CRASH_FALLS_BACK = "local-alert-round-crash-falls-back"
# ... and keep its whole state, packed, in the memo: a detail read is then one server call
# (DescribeWorkflowExecution) and never waits for a worker to replay the episode.
STATE_MEMO = "episode-state-memo"
# ... and judge an event after every deadline that fell due before it, whether the timer
# watching that deadline has fired yet or not.
DUE_BEFORE_EVENT = "deadlines-due-before-event"

# ... and address a triggered batch in the delivery round itself (one local activity, one marker),
# recording who was paged from the round's answer; a round that crashes is followed by the
# addressing alone, so the durable delivery still sends to a recorded person. The task that
# raises alerts leaves the memo to the last of its rounds to answer: one memo write per alert
# wake, not one when raised and another when the recipient is known. No alert's local activity
# wakes the loop.
ONE_ALERT_ROUND = "address-and-deliver-in-one-round"

# A run that starts with a baseline's marker has every behaviour the baseline names, under one
# marker. Each `workflow.patched` records a marker and upserts the `TemporalChangeVersion` search
# attribute (a history event and a visibility write each), so a new episode paid for twelve of
# each in its first tasks. A patch released after a baseline is asked for itself by the runs
# that began under that baseline; a new baseline takes it in. Newest first: a new run records
# only the newest marker, and a run replays under the one it recorded.
FIRST_BASELINE = "baseline-2026-12"
FIRST_BASELINE_PATCHES = frozenset(
    {
        LOCAL_ALERT_DELIVERY,
        LOCAL_LOCATION_CHECK,
        SKIP_UNCHANGED_SYNC,
        SYNC_AGAIN_AFTER_IN_FLIGHT,
        ANALYTICS_EXPORT,
        ALERT_LIFECYCLE,
        MEMO_KEEPS_EACH_RANK,
        AUTHORITY_FROM_TOKEN,
        CARRY_IO_THROUGH_CONTINUE_AS_NEW,
        IO_LANES_BY_KIND,
        ALERT_HEARTBEAT_PER_ALERT,
        ALERT_STEPS_IN_TIMELINE,
        ADDRESS_BEFORE_DELIVERY,
        LOCAL_ROUND_CRASH_FALLS_BACK,
        STATE_MEMO,
        DUE_BEFORE_EVENT,
    }
)
BASELINE = "baseline-2026-12-2"
BASELINE_PATCHES = FIRST_BASELINE_PATCHES | {ONE_ALERT_ROUND}
BASELINES = ((BASELINE, BASELINE_PATCHES), (FIRST_BASELINE, FIRST_BASELINE_PATCHES))

IO_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))


@workflow.defn(name=EPISODE_WORKFLOW)
class MissingChildEpisode:
    @workflow.init
    def __init__(self, input: EpisodeInput) -> None:
        self._pinned = input.policy
        self._policy = input.policy.policy
        self._state = input.carried_state or rules.new_state(
            input.episode_id, input.policy.version_label
        )
        self._keys = set(self._state.event_keys)
        # Asked first, once per run: a run recorded before the baseline replays without it and
        # asks for each behaviour by its own marker, as it did when it was recorded.
        self._baseline: frozenset[str] = next(
            (patches for marker, patches in BASELINES if workflow.patched(marker)), frozenset()
        )
        # Decided once per run, at its first task: a run that began without the lifecycle
        # replays without it to the end (continue-as-new starts the next with it).
        self._state.alert_lifecycle = self._patched(ALERT_LIFECYCLE)
        self._state.alert_timeline = self._state.alert_lifecycle and self._patched(
            ALERT_STEPS_IN_TIMELINE
        )
        self._memo: list[dict[str, Any]] | None = None
        # Decided once per run like the lifecycle: a run recorded without it replays without it.
        self._state_memo = self._patched(STATE_MEMO)
        # Decided once per run as well; it needs the lifecycle (only its batches are addressed).
        self._one_round = self._state.alert_lifecycle and self._patched(ONE_ALERT_ROUND)
        # Rounds dispatched and not yet answered, and whether the task that dispatched them left
        # the memo to them.
        self._rounds_in_flight = 0
        self._memo_left_to_rounds = False
        # An event was recorded since the loop last ran: its Update answers with this task, so
        # this task writes the memo itself (a read after the answer sees the event).
        self._event_in_task = False
        self._state_seen: bytes | None = None
        self._state_kept = False
        self._wake = False
        self._pending_alerts: dict[str, AlertBatch] = {}
        self._carried_alerts = list(input.pending_alerts)
        self._io_queue: list[str] = list(input.pending_io)
        # The items being worked on: one at most before the lanes, one per lane after.
        self._io_in_flight: list[str] = []
        self._continue_as_new_at = input.continue_as_new_at_history
        self._tasks: set[asyncio.Task[None]] = set()
        self._upserted: dict[str, object] = {}
        self._failed_task: asyncio.Task[None] | None = None
        # What the child's record last took from this run (a sync that would change nothing
        # is skipped; a continued run syncs once more).
        self._synced: EpisodeSummaryForChild | None = None

    def _patched(self, patch: str) -> bool:
        return patch in self._baseline or workflow.patched(patch)

    # --- the loop -----------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: EpisodeInput) -> EpisodeSummary:
        for batch in self._carried_alerts:
            self._dispatch(batch)
        if self._patched(IO_LANES_BY_KIND):
            self._spawn(self._io_loop(_is_child_sync))
            self._spawn(self._io_loop(_is_location_check))
        else:
            self._spawn(self._io_loop(None))
        timer: asyncio.Task[None] | None = None
        timer_at: datetime | None = None
        while True:
            for alert_batch in self._tick():
                self._dispatch(alert_batch)
            self._upsert_search_attributes()
            if self._state.status is EpisodeStatus.CLOSED:
                break
            if self._continue_as_new_due():
                await self._continue_as_new()
            wake_at = rules.next_wakeup(self._state, self._policy)
            if wake_at != timer_at:
                if timer is not None:
                    timer.cancel()
                timer, timer_at = None, wake_at
                if wake_at is not None:
                    delay = max((wake_at - workflow.now()).total_seconds(), 0.001)
                    timer = asyncio.create_task(asyncio.sleep(delay))
            await workflow.wait_condition(partial(self._should_wake, timer))
            self._wake = False
            if self._failed_task is not None:
                self._failed_task.result()  # re-raises
            if timer is not None and timer.done():
                timer, timer_at = None, None
        if timer is not None:
            timer.cancel()
        if self._patched(ANALYTICS_EXPORT):
            await self._export_record()
        await self._finish_outstanding_work()
        if self._state_memo or self._one_round:
            # What deliveries and record answers changed after the closure, in the closing task.
            self._upsert_memo()
        return self._state.summary()

    def _should_wake(self, timer: asyncio.Task[None] | None) -> bool:
        return self._wake or (timer is not None and timer.done())

    def _tick(self) -> list[AlertBatch]:
        alerts = rules.advance(self._state, self._policy, workflow.now())
        if self._state.alert_lifecycle:
            return self._transition_batches(alerts)
        if not alerts:
            return []
        for alert in alerts:
            workflow.logger.info(
                "alert raised",
                extra={
                    "alert_id": alert.alert_id,
                    "obligation_id": alert.obligation_id,
                    "rank": alert.rank.value,
                    "level": alert.escalation_level,
                },
            )
        return [AlertBatch(batch_id=alerts[0].alert_id, alerts=alerts)]

    async def _export_record(self) -> None:
        """The PII-free record of the closed episode, keyed by episode and run: built here (so
        every retry and replay sends the same), written by a local activity (I/O)."""
        record = episode_record(self._state, workflow.info().run_id, workflow.now())
        await workflow.execute_local_activity_method(
            AnalyticsActivities.export_episode_record,
            ExportRecordInput(record=record),
            start_to_close_timeout=ANALYTICS_EXPORT_TIMEOUT,
            retry_policy=IO_RETRY,
        )

    def _transition_batches(self, raised: list[Alert]) -> list[AlertBatch]:
        """One batch per step and person to page, in the order the steps happened."""
        _log_raised(raised)
        batches: list[AlertBatch] = []
        for step in lifecycle.drain(self._state):
            last = batches[-1] if batches else None
            if (
                last is not None
                and last.transition is step.transition
                and last.notify == step.notify
                and last.reason == step.reason
            ):
                last.alerts.append(step.alert)
                continue
            alert = step.alert
            stamp = {
                "triggered": str(alert.ack_timeouts),
                "acknowledged": alert.acknowledged_at.isoformat() if alert.acknowledged_at else "",
                "resolved": "",
            }[step.transition.value]
            batches.append(
                AlertBatch(
                    batch_id=f"{alert.alert_id}:{step.transition.value}:{stamp}",
                    alerts=[alert],
                    transition=step.transition,
                    notify=step.notify,
                    reason=step.reason,
                )
            )
        return batches

    async def _finish_outstanding_work(self) -> None:
        """A closed episode waits (bounded) for alert deliveries and record updates in flight,
        so nothing promised is dropped when the run completes."""
        grace = self._policy.alerts.closed_episode_delivery_grace
        try:
            await workflow.wait_condition(
                lambda: not self._pending_alerts and not self._io_queue and not self._io_in_flight,
                timeout=grace,
            )
        except TimeoutError:
            workflow.logger.warning(
                "closing with undelivered alerts", extra={"batches": len(self._pending_alerts)}
            )
        await workflow.wait_condition(workflow.all_handlers_finished)

    def _continue_as_new_due(self) -> bool:
        info = workflow.info()
        if info.is_continue_as_new_suggested():
            return True
        limit = self._continue_as_new_at
        return limit is not None and info.get_current_history_length() >= limit

    async def _continue_as_new(self) -> None:
        """Carry the whole state and pending work; never from inside a handler. The I/O in flight
        (first in the queue until done) is carried too and runs again in the next run: a sync
        repeats harmlessly (the record keeps one summary per episode) and a register look-up
        whose answer had not arrived was not applied."""
        if self._patched(CARRY_IO_THROUGH_CONTINUE_AS_NEW):
            await workflow.wait_condition(workflow.all_handlers_finished)
        else:
            await workflow.wait_condition(
                lambda: workflow.all_handlers_finished() and not self._io_in_flight
            )
        if self._state.alert_lifecycle:
            # Steps taken by handlers while waiting are carried, not lost with the outbox.
            for batch in self._transition_batches([]):
                self._pending_alerts[batch.batch_id] = batch
        memo: dict[str, Any] | None = None
        if self._state_memo:
            # The next run starts with the memo, so no read falls between the runs.
            memo = {} if self._memo is None else {ALERTS_MEMO: self._memo}
            packed = state_memo.pack(state_memo.state_json(self._state))
            if packed is not None:
                memo[state_memo.STATE_MEMO] = packed
        workflow.continue_as_new(
            EpisodeInput(
                episode_id=self._state.episode_id,
                policy=self._pinned,
                carried_state=self._state,
                pending_alerts=list(self._pending_alerts.values()),
                pending_io=list(self._io_queue),
                continue_as_new_at_history=self._continue_as_new_at,
            ),
            memo=memo,
        )

    # --- events -------------------------------------------------------------------------------

    @workflow.update(name="record_event")
    def record_event(self, input: RecordEventInput) -> RecordEventResult:
        event: EventBase = input.event
        if event_key(event) in self._keys or self._repeat_ack(event):
            return self._result(event, input.request_id, "duplicate")
        now = workflow.now()
        if self._state.alert_lifecycle and self._patched(DUE_BEFORE_EVENT):
            self._raise_due_before(now)
        try:
            rules.check_event(
                self._state,
                event,
                self._policy,
                now,
                authority=self._patched(AUTHORITY_FROM_TOKEN),
            )
        except EventRefused as refused:
            raise _refusal_error(refused) from None
        effects = rules.apply_event(self._state, event, self._policy, now)
        self._keys.add(event_key(event))
        self._event_in_task = True
        if effects.child_sync:
            self._queue_io(CHILD_SYNC)
        for check in effects.location_checks:
            self._queue_io(f"{LOCATION_PREFIX}{check.postcode_key}:{check.event_id}")
        self._wake = True
        return self._result(event, input.request_id, "accepted")

    def _raise_due_before(self, now: datetime) -> None:
        """Deadlines a late timer has not reported yet, raised as at the instants they fell due:
        their steps wait in the lifecycle's outbox, and the loop, woken, hands them to the
        sinks with its own."""
        raised = rules.advance_before(self._state, self._policy, now)
        _log_raised(raised)
        if raised:
            self._wake = True

    @record_event.validator
    def validate_event(self, input: RecordEventInput) -> None:
        event: EventBase = input.event
        if event_key(event) in self._keys:
            raise ApplicationError("event already recorded", type=DUPLICATE_ERROR)
        if self._repeat_ack(event):
            raise ApplicationError("alert already acknowledged by them", type=DUPLICATE_ERROR)
        try:
            rules.check_event(self._state, event, self._policy, workflow.now())
        except EventRefused as refused:
            raise _refusal_error(refused) from None

    def _repeat_ack(self, event: EventBase) -> bool:
        return (
            self._state.alert_lifecycle
            and isinstance(event, AlertAcknowledged)
            and lifecycle.is_repeat_ack(self._state, event.data.alert_id, event.data.by)
        )

    def _result(self, event: EventBase, request_id: str, status: str) -> RecordEventResult:
        return RecordEventResult(
            episode_id=self._state.episode_id,
            event_id=event.id,
            status="accepted" if status == "accepted" else "duplicate",
            request_id=request_id,
        )

    @workflow.query(name="state")
    def state(self) -> EpisodeState:
        return self._state

    @workflow.query(name="summary")
    def summary(self) -> EpisodeSummary:
        return self._state.summary()

    # --- I/O through activities ---------------------------------------------------------------

    def _queue_io(self, item: str) -> None:
        if item not in self._io_queue:
            self._io_queue.append(item)
        elif (
            item == CHILD_SYNC
            and CHILD_SYNC in self._io_in_flight
            and self._io_queue.count(CHILD_SYNC) == 1
            and self._patched(SYNC_AGAIN_AFTER_IN_FLIGHT)
        ):
            # The sync in flight read the state before this change: once it is done, sync
            # again (before the fix the change waited for some later sync).
            self._io_queue.append(item)

    async def _io_loop(self, lane: Callable[[str], bool] | None) -> None:
        """Child-record and register look-ups run beside the main loop, so an Update is answered
        without waiting for them: one lane per kind (`lane` picks its items), or one lane for
        both in runs that began before the lanes."""
        while True:
            await workflow.wait_condition(lambda: self._next_io(lane) is not None)
            item = self._next_io(lane)
            assert item is not None
            self._io_in_flight.append(item)
            try:
                if item == CHILD_SYNC:
                    await self._sync_child_record()
                elif item.startswith(LOCATION_PREFIX):
                    key, event_id = item[len(LOCATION_PREFIX) :].split(":", 1)
                    await self._check_location(key, event_id)
            finally:
                self._io_queue.remove(item)
                self._io_in_flight.remove(item)
            self._wake = True

    def _next_io(self, lane: Callable[[str], bool] | None) -> str | None:
        """The lane's next item: the first queued of its kind not already being worked on (a
        sync queued again behind the one in flight waits for it)."""
        if lane is None:
            return self._io_queue[0] if self._io_queue else None
        for item in self._io_queue:
            if lane(item):
                return None if item in self._io_in_flight else item
        return None

    async def _sync_child_record(self) -> None:
        state = self._state
        if state.child_ref is None or state.reported_at is None:
            return
        summary = EpisodeSummaryForChild(
            episode_id=state.episode_id,
            reported_at=state.reported_at,
            found_at=state.found_at,
            found_postcode_key=state.found_postcode_key,
            risk_level=state.risk.level.value if state.risk else None,
            flags=list(state.flags),
            status=state.status.value,
        )
        if summary == self._synced and self._patched(SKIP_UNCHANGED_SYNC):
            # A reassessment at the same level, a confirmed grade: nothing the record keeps.
            return
        repeat = self._policy.repeat
        windows = sorted({*repeat.windows_days, *(t.days for t in repeat.thresholds)})
        history = await workflow.execute_activity_method(
            ChildRecordActivities.sync_child_record,
            SyncChildRecordInput(
                child_ref=state.child_ref,
                summary=summary,
                windows_days=windows,
                same_location_episodes=repeat.same_location_episodes,
            ),
            start_to_close_timeout=IO_TIMEOUT,
            heartbeat_timeout=IO_HEARTBEAT,
            retry_policy=IO_RETRY,
        )
        self._synced = summary
        rules.apply_child_history(
            state,
            history.counts_by_days,
            history.repeated_location_keys,
            self._policy,
            workflow.now(),
        )

    async def _check_location(self, key: str, event_id: str) -> None:
        if self._patched(LOCAL_LOCATION_CHECK):
            # An in-memory register look-up: a local activity costs one marker in history, not
            # an activity task's three events and a workflow task.
            hits = await workflow.execute_local_activity_method(
                LocationActivities.check_location,
                CheckLocationInput(postcode_key=key),
                start_to_close_timeout=LOCAL_CHECK_TIMEOUT,
                retry_policy=IO_RETRY,
            )
        else:
            hits = await workflow.execute_activity_method(
                LocationActivities.check_location,
                CheckLocationInput(postcode_key=key),
                start_to_close_timeout=IO_TIMEOUT,
                heartbeat_timeout=IO_HEARTBEAT,
                retry_policy=IO_RETRY,
            )
        if hits:
            workflow.logger.info("location of concern matched", extra={"event_id": event_id})
            rules.apply_location_hits(self._state, hits, event_id, self._policy, workflow.now())
            self._queue_io(CHILD_SYNC)

    # --- alerts -------------------------------------------------------------------------------

    def _dispatch(self, batch: AlertBatch) -> None:
        """Deliveries run beside the loop: a failing sink retries (with back-off, until
        delivered) without holding up deadlines or other episodes' alerts."""
        self._pending_alerts[batch.batch_id] = batch
        if self._one_round:
            self._rounds_in_flight += 1
            self._memo_left_to_rounds = True
        self._spawn(self._deliver(batch))

    async def _deliver(self, batch: AlertBatch) -> None:
        done: list[str] = []
        counted = False
        addressed: dict[str, Paged] | None = None
        if self._one_round:
            first, addressed = await self._round_that_addresses(batch)
            if not first.failed:
                self._pending_alerts.pop(batch.batch_id, None)
                return
            done, counted = first.delivered, True
        elif batch.transition is AlertState.TRIGGERED and self._patched(ADDRESS_BEFORE_DELIVERY):
            answer = await workflow.execute_local_activity_method(
                AlertActivities.address_alerts,
                AddressAlertsInput(batch=batch),
                start_to_close_timeout=LOCAL_CHECK_TIMEOUT,
                retry_policy=IO_RETRY,
            )
            addressed = answer.paged
            self._record_paged(batch, addressed)
        if not self._one_round and self._patched(LOCAL_ALERT_DELIVERY):
            # activities/alerts.py: a local round first; the server retries only what failed.
            try:
                first = await workflow.execute_local_activity_method(
                    AlertActivities.deliver_alerts_once,
                    DeliverAlertsOnceInput(batch=batch, paged=addressed),
                    start_to_close_timeout=ALERT_ROUND_TIMEOUT,
                    retry_policy=RetryPolicy(maximum_attempts=1),
                )
            except ActivityError:
                first = AlertDelivery(delivered=[], failed=["(local round)"])
            except ApplicationError:
                # A local activity's own failure arrives unwrapped: a round that crashed falls
                # back to the durable delivery too, rather than failing the episode.
                if not self._patched(LOCAL_ROUND_CRASH_FALLS_BACK):
                    raise
                first = AlertDelivery(delivered=[], failed=["(local round)"])
            if batch.transition is not None and first.paged and addressed is None:
                self._record_paged(batch, first.paged)
            if not first.failed:
                self._pending_alerts.pop(batch.batch_id, None)
                return
            done, counted = first.delivered, True
        if self._patched(ALERT_HEARTBEAT_PER_ALERT):
            attempt, heartbeat = DELIVERY_ATTEMPT_TIMEOUT, DELIVERY_HEARTBEAT_TIMEOUT
        else:
            attempt, heartbeat = FORMER_DELIVERY_ATTEMPT_TIMEOUT, FORMER_DELIVERY_HEARTBEAT_TIMEOUT
        await workflow.execute_activity_method(
            AlertActivities.deliver_alerts,
            DeliverAlertsInput(batch=batch, done=done, counted=counted, paged=addressed),
            start_to_close_timeout=attempt,
            heartbeat_timeout=heartbeat,
            retry_policy=RetryPolicy(
                initial_interval=RETRY_FLOOR,
                backoff_coefficient=2.0,
                # a drill's time scale must not turn back-off into a busy loop
                maximum_interval=max(self._policy.alerts.delivery_max_interval, RETRY_FLOOR),
            ),
        )
        self._pending_alerts.pop(batch.batch_id, None)

    async def _round_that_addresses(
        self, batch: AlertBatch
    ) -> tuple[AlertDelivery, dict[str, Paged] | None]:
        """One local activity addresses a triggered batch (rota, signed link) and tries every
        sink once; who was paged is recorded from its answer, which a failing sink does not
        withhold. The last round to answer writes the memo the raising task left, without
        waking the loop: no rule is stepped at a round's answer. A round that crashed is
        followed by the addressing alone (recorded, and the memo written again), so the durable
        delivery sends to a recorded person; a memo never waits for an addressing retried."""
        triggered = batch.transition is AlertState.TRIGGERED
        try:
            first = await workflow.execute_local_activity_method(
                AlertActivities.deliver_alerts_once,
                DeliverAlertsOnceInput(batch=batch),
                start_to_close_timeout=ALERT_ROUND_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except (ActivityError, ApplicationError):
            # Timed out, or crashed (a local activity's own failure arrives unwrapped).
            first = AlertDelivery(delivered=[], failed=["(local round)"])
        finally:
            self._rounds_in_flight -= 1
        if triggered and first.paged:
            self._record_paged(batch, first.paged, wake=False)
        if not self._rounds_in_flight:
            self._memo_left_to_rounds = False
            self._upsert_memo()
        if triggered and not first.paged:
            answer = await workflow.execute_local_activity_method(
                AlertActivities.address_alerts,
                AddressAlertsInput(batch=batch),
                start_to_close_timeout=LOCAL_CHECK_TIMEOUT,
                retry_policy=IO_RETRY,
            )
            first.paged = answer.paged
            self._record_paged(batch, first.paged, wake=False)
            self._upsert_memo()
        return first, first.paged if triggered else None

    def _record_paged(
        self, batch: AlertBatch, paged: dict[str, Paged], *, wake: bool = True
    ) -> None:
        snapshots = {a.alert_id: a for a in batch.alerts}
        for alert_id, address in paged.items():
            lifecycle.record_recipient(
                self._state,
                alert_id,
                address.recipient,
                address.ack_url,
                address.unstaffed,
                paged_for=snapshots.get(alert_id),
            )
        self._wake = self._wake or wake

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """A background task that fails is a bug: surface it in the main loop, which fails the
        workflow task (retried, visible in the UI) instead of losing the work silently."""
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._failed_task = task
            self._wake = True

    # --- visibility ---------------------------------------------------------------------------

    def _upsert_search_attributes(self) -> None:
        """Keep the supervisor's `temporal workflow list` view current; no personal data."""
        state = self._state
        wanted: list[tuple[str, object, SearchAttributeUpdate[Any]]] = [
            _sa(sa.EPISODE_STATUS, state.status.value),
            _sa(sa.RISK_LEVEL, state.risk.level.value if state.risk else None),
            _sa(sa.CHILD_REF, state.child_ref),
            _sa(sa.OVERDUE_COUNT, state.overdue_count),
            _sa(sa.NEXT_DEADLINE, state.next_deadline),
            _sa(sa.LOOKED_AFTER, state.looked_after),
            _sa(sa.EPISODE_FLAGS, list(state.flags)),
        ]
        if state.alert_lifecycle:
            wanted.append(_sa(sa.ALERT_STATES, _alert_tokens(state.alerts) or None))
        if not self._memo_left_to_rounds or self._event_in_task:
            self._upsert_memo()
        # else this task's rounds write it when they answer, with who was paged: one write
        self._memo_left_to_rounds = self._event_in_task = False
        changed = [w for w in wanted if self._upserted.get(w[0], _UNSET) != w[1]]
        if changed:
            workflow.upsert_search_attributes([update for _, _, update in changed])
            for name, value, _ in changed:
                self._upserted[name] = value

    def _upsert_memo(self) -> None:
        """One memo upsert (one history event) for whatever changed in this task: the alerts
        and, with the state memo, the packed state."""
        changes: dict[str, Any] = {}
        if self._state.alert_lifecycle:
            self._alerts_memo_change(changes)
        if self._state_memo:
            self._state_memo_change(changes)
        if changes:
            workflow.upsert_memo(changes)

    def _state_memo_change(self, changes: dict[str, Any]) -> None:
        """`GET /v1/episodes/{id}` reads this instead of querying the workflow; stale by at most
        the task in progress. A state too large to keep is removed (readers then query)."""
        raw = state_memo.state_json(self._state)
        seen = state_memo.fingerprint(raw)
        if seen == self._state_seen:
            return
        packed = state_memo.pack(raw)
        if packed is not None or self._state_seen is None or self._state_kept:
            changes[state_memo.STATE_MEMO] = packed
        self._state_seen, self._state_kept = seen, packed is not None

    def _alerts_memo_change(self, changes: dict[str, Any]) -> None:
        """`GET /v1/alerts` reads alerts from the memo of the episodes visibility finds, so a
        listing replays no workflow; ids, ranks, times and the paged officer only."""
        alerts = self._state.alerts
        unresolved = memo_unresolved(alerts, each_rank=self._patched(MEMO_KEEPS_EACH_RANK))
        resolved = [a for a in alerts if a.state is AlertState.RESOLVED][-MEMO_RESOLVED_KEPT:]
        memo = [_memo_entry(a) for a in sorted([*unresolved, *resolved], key=_raised_order)]
        if memo != self._memo:
            changes[ALERTS_MEMO] = memo
            self._memo = memo


def _log_raised(alerts: list[Alert]) -> None:
    for alert in alerts:
        workflow.logger.info(
            "alert raised", extra={"alert_id": alert.alert_id, "rank": alert.rank.value}
        )


def _is_child_sync(item: str) -> bool:
    return item == CHILD_SYNC


def _is_location_check(item: str) -> bool:
    return item.startswith(LOCATION_PREFIX)


def _sa(key: SearchAttributeKey[Any], value: Any) -> tuple[str, object, SearchAttributeUpdate[Any]]:
    update = key.value_set(value) if value is not None else key.value_unset()
    return key.name, value, update


_UNSET = object()

MEMO_FIELDS = (
    "alert_id",
    "obligation_id",
    "kind",
    "due_at",
    "escalation_level",
    "rank",
    "raised_at",
    "state",
    "acknowledged_by",
    "acknowledged_at",
    "ack_expires_at",
    "resolved_at",
    "recipient",
    "unstaffed",
)


def _memo_entry(alert: Alert) -> dict[str, Any]:
    data = alert.model_dump(mode="json", include=set(MEMO_FIELDS))
    return {name: data[name] for name in MEMO_FIELDS}


def memo_unresolved(alerts: list[Alert], *, each_rank: bool) -> list[Alert]:
    """The unresolved alerts the memo lists: the newest few of each obligation (older levels are
    superseded) and, with `each_rank`, the newest of each rank and state too, so no `state:rank`
    token of the index points at an episode whose memo has no such alert."""
    by_obligation: dict[str, list[Alert]] = {}
    for alert in alerts:
        if alert.state is not AlertState.RESOLVED:
            by_obligation.setdefault(alert.obligation_id, []).append(alert)
    kept: list[Alert] = []
    for listed in by_obligation.values():
        keep = {a.alert_id for a in listed[-MEMO_UNRESOLVED_PER_OBLIGATION:]}
        if each_rank:
            keep.update({(a.rank, a.state): a.alert_id for a in listed}.values())
        kept += [a for a in listed if a.alert_id in keep]
    return kept


def _raised_order(alert: Alert) -> tuple[datetime, int]:
    return alert.raised_at, alert.escalation_level


def _alert_tokens(alerts: list[Alert]) -> list[str]:
    """What an alert listing filters on: each state present, and state with rank for the
    unresolved (no names, no person ids)."""
    tokens: set[str] = set()
    for alert in alerts:
        tokens.add(alert.state.value)
        if alert.state is not AlertState.RESOLVED:
            tokens.add(f"{alert.state.value}:{alert.rank.value}")
    return sorted(tokens)


def _refusal_error(refused: EventRefused) -> ApplicationError:
    return ApplicationError(
        refused.refusal.message,
        refused.refusal.model_dump(mode="json"),
        type=REFUSED_ERROR,
        non_retryable=True,
    )
