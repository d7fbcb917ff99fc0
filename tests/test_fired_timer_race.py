"""The time-skipping test server and an event sent in the instant a timer falls due.

An event that moves the episode's next wake cancels the timer the loop waits on. When that timer
fires while the event's workflow task is with the worker, Temporal's time-skipping test server
refuses the cancellation ("invalid history builder state for action") and then neither accepts
the task nor sends it again: the run is stranded and the server's clock held for every later
test. The test harness therefore moves the clock past a timer due within its guard before it
sends an event (`tests.harness.clear_of_timers`). Here the race is made certain, the event's
task held by the worker past the deadline it meets, and the harness must keep the episode
going."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import (
    HandleUpdateInput,
    Interceptor,
    UnsandboxedWorkflowRunner,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from mispers.config import Settings
from mispers.domain.types import ObligationStatus
from mispers.policy import PinnedPolicy
from tests.harness import STARTED, EpisodeDriver, terminate_running
from worker import build_worker

pytestmark = pytest.mark.integration

# The event is sent this long before the deadline, and its task held this long after.
BEFORE_DEADLINE = dt.timedelta(milliseconds=300)
HOLD = 1.5
# An event stranded by the server never answers; one that is not answers well within this.
ANSWER_WITHIN = 30.0

HOLDING = threading.Event()


class _HoldUpdates(WorkflowInboundInterceptor):
    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        if HOLDING.is_set():
            # The worker is slow with this task (blocking, as a loaded machine would be): the
            # deadline passes meanwhile.
            time.sleep(HOLD)  # noqa: ASYNC251
        return await super().handle_update_handler(input)


class HoldUpdates(Interceptor):
    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _HoldUpdates


@pytest.fixture
async def driver(
    ts_env: WorkflowEnvironment, pinned: PinnedPolicy, tmp_path: Path
) -> AsyncIterator[EpisodeDriver]:
    queue = f"race-{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=tmp_path)
    worker = build_worker(
        ts_env.client,
        settings,
        task_queue=queue,
        interceptors=[HoldUpdates()],
        # The hold blocks the workflow thread on purpose: no sandbox, no deadlock detector.
        workflow_runner=UnsandboxedWorkflowRunner(),
        debug_mode=True,
    )
    async with worker:
        yield EpisodeDriver(ts_env, pinned, queue, f"E-{uuid.uuid4().hex[:10]}")
        HOLDING.clear()
        await terminate_running(ts_env, STARTED)


async def test_an_event_sent_as_a_deadline_falls_due_waits_for_its_timer(
    driver: EpisodeDriver,
) -> None:
    await driver.send("episode.reported")
    state = await driver.state()
    checks = state.obligation("systems_checks")
    assert checks is not None and checks.due_at is not None
    first_due = min(o.due_at for o in state.outstanding() if o.due_at is not None)
    assert checks.due_at == first_due, "the loop's timer is for the systems checks"

    await driver.env.sleep(first_due - await driver.now() - BEFORE_DEADLINE)
    HOLDING.set()
    outcome = await asyncio.wait_for(driver.send("enquiry.recorded"), timeout=ANSWER_WITHIN)
    HOLDING.clear()
    assert outcome.status == "accepted"

    # The timer fired and was handled before the event: the deadline was missed, then met.
    state = await driver.state()
    checks = state.obligation("systems_checks")
    assert checks is not None and checks.status is ObligationStatus.MET
    assert checks.met_at is not None and checks.met_at >= first_due
    assert [a.escalation_level for a in state.alerts if a.obligation_id == "systems_checks"] == [1]
    # The episode's loop still wakes for what is due next, and the clock still skips.
    later = min(o.due_at for o in state.outstanding() if o.due_at is not None)
    await driver.env.sleep(later - await driver.now() + dt.timedelta(minutes=1))
    assert [o for o in (await driver.state()).outstanding() if o.status is ObligationStatus.OVERDUE]
    await driver.close()
