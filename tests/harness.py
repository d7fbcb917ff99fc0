"""Drive an episode through the engine the way the API does (submit_event), with the clock of
whatever server the test uses (time-skipping or dev)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import (
    HandleUpdateInput,
    Interceptor,
    UnsandboxedWorkflowRunner,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from mispers.domain import episode as rules
from mispers.domain.messages import child_workflow_id, episode_workflow_id
from mispers.domain.state import EpisodeState, Obligation
from mispers.engine.client import EventRejected, SubmitOutcome, query_episode_state, submit_event
from mispers.policy import PinnedPolicy, Policy
from testkit.factories import event, merge
from tests.conftest import eventually

# A sleep with nothing due returns at once; a loaded machine is given this long.
CLOCK_CHECK = 15.0
CLOSE_ATTEMPTS = 5

# How near the episode's next timer may be when a test sends it an event on the time-skipping
# server: longer than any workflow task takes on a loaded machine.
TIMER_GUARD = dt.timedelta(seconds=5)
GUARD_SKIPS = 20


def sources_first(workflow_ids: Iterable[str]) -> list[str]:
    """Each id once, child records (only ever written to) after the episodes that write."""
    records = child_workflow_id("")
    return sorted(dict.fromkeys(workflow_ids), key=lambda wid: wid.startswith(records))


async def terminate_running(
    target: Client | WorkflowEnvironment, workflow_ids: Iterable[str]
) -> None:
    """Tests on the shared time-skipping server must leave no workflow whose worker is gone:
    its pending tasks would stop time skipping for every later test.

    Each is terminated only once it is idle: no activity and no workflow task in flight. The
    time-skipping server holds its clock while an activity or a workflow task is outstanding and
    releases it when that completes, fails or times out; once the workflow is terminated, all
    of these are refused ("Completed workflow"), so the hold is never released and every later
    sleep on the server runs in real time until its 30 s RPC deadline ("Timeout expired").

    Idle is not enough on its own: between skips the test server's clock runs at real pace, so
    a timer due within moments of the check fires and hands the worker a task just before the
    termination lands. Given the environment, a time-skipping server's clock is first moved
    past any timer of the workflow due within TIMER_GUARD, and idleness and the next timer are
    read from one copy of the history, so a timer cannot fire between the two readings.

    Episodes go before child records. An episode reaches its child's record by an
    Update-with-start from an activity, so a child record terminated while one of its episodes
    still runs is started again by that episode's next sync: a new run, whose first workflow
    task is left with the worker as the test ends and holds the clock for every later test.
    Once its episodes are terminated idle, nothing can write to a child record any more."""
    env = target if isinstance(target, WorkflowEnvironment) else None
    client = target.client if isinstance(target, WorkflowEnvironment) else target
    guard = env is not None and env.supports_time_skipping
    for workflow_id in sources_first(workflow_ids):
        for _ in range(GUARD_SKIPS):
            run = await eventually(
                lambda wid=workflow_id: run_snapshot(client, wid),  # type: ignore[misc]
                lambda r: r is None or not r.in_flight,
                within=60,
            )
            if run is None:
                break  # closed, or never started
            if env is None or not guard or run.next_timer is None:
                break
            now = await env.get_current_time()
            if run.next_timer - now > TIMER_GUARD:
                break
            await skip_past(env, run.next_timer, now)
        else:
            raise AssertionError(f"{workflow_id} has a timer within {TIMER_GUARD} after each skip")
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(workflow_id).terminate("test finished")


TASK_OUTSTANDING = (
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
)
RUN_CLOSED = (
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
)


@dataclass(frozen=True)
class RunSnapshot:
    """A running run as one copy of its history shows it."""

    in_flight: int  # activities and workflow tasks outstanding
    next_timer: dt.datetime | None  # when its soonest pending timer fires


async def run_snapshot(client: Client, workflow_id: str) -> RunSnapshot | None:
    """The workflow's running run; None when it is closed or was never started."""
    try:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
    except RPCError:
        return None
    if not history.events or history.events[-1].event_type in RUN_CLOSED:
        return None
    activities: set[int] = set()
    timers: dict[str, dt.datetime] = {}
    for e in history.events:
        kind = e.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            activities.add(e.event_id)
        elif kind in ACTIVITY_ENDED:
            activities.discard(getattr(e, ACTIVITY_ENDED[kind]).scheduled_event_id)
        elif kind == EventType.EVENT_TYPE_TIMER_STARTED:
            a = e.timer_started_event_attributes
            fires = e.event_time.ToDatetime(dt.UTC) + a.start_to_fire_timeout.ToTimedelta()
            timers[a.timer_id] = fires
        elif kind == EventType.EVENT_TYPE_TIMER_FIRED:
            timers.pop(e.timer_fired_event_attributes.timer_id, None)
        elif kind == EventType.EVENT_TYPE_TIMER_CANCELED:
            timers.pop(e.timer_canceled_event_attributes.timer_id, None)
    task = history.events[-1].event_type in TASK_OUTSTANDING
    return RunSnapshot(
        in_flight=len(activities) + task, next_timer=min(timers.values(), default=None)
    )


ACTIVITY_ENDED = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity_task_failed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activity_task_timed_out_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "activity_task_canceled_event_attributes",
}


async def work_in_flight(client: Client, workflow_id: str) -> int | None:
    """Activities and workflow tasks the running run has in flight; None when not running."""
    run = await run_snapshot(client, workflow_id)
    return None if run is None else run.in_flight


async def clock_still_skips(env: WorkflowEnvironment) -> None:
    """Fail the test that left the shared time-skipping server unable to skip time (rather
    than whichever later test first sleeps)."""
    try:
        await asyncio.wait_for(env.sleep(dt.timedelta(minutes=1)), timeout=CLOCK_CHECK)
    except (TimeoutError, RPCError):
        raise AssertionError(
            "the time-skipping server no longer skips time after this test: something of it "
            "still holds the clock (a workflow terminated with an activity in flight?)"
        ) from None


async def clear_of_timers(
    env: WorkflowEnvironment,
    episode_ids: Iterable[str],
    policy: Policy,
    guard: dt.timedelta = TIMER_GUARD,
) -> dt.datetime:
    """Move the time-skipping server's clock past the episodes' next timers while one is due
    within `guard`; the instant reached, with every timer due by then handled.

    Temporal's time-skipping test server strands a run whose workflow task cancels a timer
    that fired while the task was with the worker: it refuses the completion ("invalid history
    builder state for action") and never times the task out nor sends it again, so the episode
    stops and the server's clock stays held for every later test (sleeps then answer "Timeout
    expired" after 30 s). Temporal's own server accepts that completion. Between skips the test
    server's clock runs at real pace, and a skip usually lands on the instant an escalation or
    deadline falls due, so the episode's next timer is often due within milliseconds of the
    event a test sends next; an event that moves the next wake cancels that timer. Sending the
    event after the timer has fired and been handled takes the race away; the event is then
    recorded up to TIMER_GUARD later than the test's clock said."""
    ids = list(episode_ids)
    for _ in range(GUARD_SKIPS):
        wakes = []
        for episode_id in ids:
            state = await query_episode_state(env.client, episode_id)
            if state is not None and (wake := rules.next_wakeup(state, policy)) is not None:
                wakes.append(wake)
        now = await env.get_current_time()
        soonest = min(wakes, default=None)
        if soonest is None or soonest - now > guard:
            return now
        await skip_past(env, soonest, now)
    raise AssertionError(f"episodes {ids} have a timer within {guard} after each skip")


async def skip_past(env: WorkflowEnvironment, instant: dt.datetime, now: dt.datetime) -> None:
    """Move the clock just past `instant`, so what falls due then has fired."""
    await env.sleep(max(instant - now, dt.timedelta(0)) + dt.timedelta(milliseconds=100))


STARTED: list[str] = []


@dataclass
class Hold:
    """How long the worker is slow with each Update's task; 0 when it is not."""

    seconds: float = 0.0


UPDATE_HOLD = Hold()


class _HoldUpdates(WorkflowInboundInterceptor):
    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        if UPDATE_HOLD.seconds:
            # The worker is slow with this task (blocking, as a loaded machine would be).
            time.sleep(UPDATE_HOLD.seconds)  # noqa: ASYNC251
        return await super().handle_update_handler(input)


class HoldUpdates(Interceptor):
    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _HoldUpdates


# A report's task held this long starts the loop's timer as late; an event is then sent this
# long after the deadline, and its task must end before the late timer fires.
LATE_TIMER_HOLD = 4.0
AFTER_DEADLINE = dt.timedelta(milliseconds=500)


async def send_after_late_timer(d: EpisodeDriver) -> dt.datetime:
    """Report an episode with a slow task, then send `enquiry.recorded` just after the systems
    checks fall due and before their timer fires; the deadline is returned. The server starts a
    timer when the task that set it completes, so the slow task made the timer late. Needs a
    worker with `slow_update_worker_options`."""
    UPDATE_HOLD.seconds = LATE_TIMER_HOLD
    try:
        await d.send("episode.reported")
    finally:
        UPDATE_HOLD.seconds = 0
    state = await d.state()
    due = min(o.due_at for o in state.outstanding() if o.due_at is not None)
    checks = state.obligation("systems_checks")
    assert checks is not None and checks.due_at == due, "the loop's timer is the systems checks'"
    await d.env.sleep(due - await d.now() + AFTER_DEADLINE)
    d.guard_timers = False  # the guard would move the clock past the late timer
    try:
        outcome = await asyncio.wait_for(d.send("enquiry.recorded"), timeout=CLOCK_CHECK)
    finally:
        d.guard_timers = True
    assert outcome.status == "accepted"
    return due


def slow_update_worker_options() -> dict[str, Any]:
    """`build_worker` options for a worker whose Update tasks `UPDATE_HOLD` makes slow: the
    hold blocks the workflow thread on purpose, so no sandbox and no deadlock detector."""
    return {
        "interceptors": [HoldUpdates()],
        "workflow_runner": UnsandboxedWorkflowRunner(),
        "debug_mode": True,
    }


class EpisodeDriver:
    def __init__(
        self,
        env: WorkflowEnvironment,
        pinned: PinnedPolicy,
        task_queue: str,
        episode_id: str,
        child_ref: str = "C-1",
    ) -> None:
        self.env = env
        self.client: Client = env.client
        self.pinned = pinned
        self.task_queue = task_queue
        self.episode_id = episode_id
        self.child_ref = child_ref
        # A policy run at a time scale (a test of 48 policy hours in 48 s, on a server of its
        # own) has timers every second or two: no 5 s window is ever clear, so it is not guarded.
        self.guard_timers = env.supports_time_skipping and pinned.time_scale == 1

    async def now(self) -> dt.datetime:
        return await self.env.get_current_time()

    async def send(
        self,
        kind: str,
        data: dict[str, Any] | None = None,
        *,
        at: dt.datetime | None = None,
        **kwargs: Any,
    ) -> SubmitOutcome:
        STARTED.extend([episode_workflow_id(self.episode_id), child_workflow_id(self.child_ref)])
        if self.guard_timers:
            await clear_of_timers(self.env, [self.episode_id], self.pinned.policy)
        when = at or await self.now()
        stamp = when.isoformat()
        by_kind: dict[str, dict[str, Any]] = {
            "episode.reported": {"child": {"child_ref": self.child_ref}, "last_seen_at": stamp},
            "child.found": {"found_at": stamp},
            "sighting.reported": {"seen_at": stamp},
        }
        data = merge(by_kind.get(kind, {}), data or {})
        return await submit_event(
            self.client,
            event(kind, self.episode_id, when, data, **kwargs),
            self.pinned,
            self.task_queue,
        )

    async def state(self) -> EpisodeState:
        state = await query_episode_state(self.client, self.episode_id)
        assert state is not None
        return state

    async def obligation(self, oid: str) -> Obligation:
        state = await self.state()
        ob = state.obligation(oid)
        assert ob is not None, f"no obligation {oid}: {[o.id for o in state.obligations]}"
        return ob

    async def close(self) -> None:
        """Found and closed with every open obligation waived (episodes a test leaves behind).
        An answer from the child's record can add obligations between the read and the closure
        (a repeat's meeting and screening): then the closure is refused, and asked for again
        with those waived too."""
        state = await self.state()
        if state.status.value == "missing":
            await self.send("child.found")
        for _ in range(CLOSE_ATTEMPTS):
            state = await self.state()
            waivers = [{"obligation_id": o.id, "reason": "test drill"} for o in state.outstanding()]
            try:
                await self.send("closure.approved", {"waivers": waivers})
                return
            except EventRejected as refused:
                if refused.refusal.code != "open_obligations":
                    raise
        raise AssertionError(f"episode {self.episode_id} still refuses closure")

    async def skip(self, **delta: float) -> None:
        await self.env.sleep(dt.timedelta(**delta))
