"""Events that race the timers of the deadlines they meet.

First, the time-skipping test server and an event sent in the instant a timer falls due.

An event that moves the episode's next wake cancels the timer the loop waits on. When that timer
fires while the event's workflow task is with the worker, Temporal's time-skipping test server
refuses the cancellation ("invalid history builder state for action") and then neither accepts
the task nor sends it again: the run is stranded and the server's clock held for every later
test. The test harness therefore moves the clock past a timer due within its guard before it
sends an event (`tests.harness.clear_of_timers`). Here the race is made certain, the event's
task held by the worker past the deadline it meets, and the harness must keep the episode
going.

Second, a timer made late by a slow task, and an event that arrives between the deadline and
the timer: the episode must raise the deadline before it applies the event."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from mispers.config import Settings
from mispers.domain.types import ObligationStatus
from mispers.policy import PinnedPolicy
from tests.harness import (
    STARTED,
    UPDATE_HOLD,
    EpisodeDriver,
    send_after_late_timer,
    slow_update_worker_options,
    terminate_running,
)
from worker import build_worker

pytestmark = pytest.mark.integration

# The event is sent this long before the deadline, and its task held this long after.
BEFORE_DEADLINE = dt.timedelta(milliseconds=300)
HOLD = 1.5
# An event stranded by the server never answers; one that is not answers well within this.
ANSWER_WITHIN = 30.0


@pytest.fixture
async def driver(
    ts_env: WorkflowEnvironment, pinned: PinnedPolicy, tmp_path: Path
) -> AsyncIterator[EpisodeDriver]:
    queue = f"race-{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=tmp_path)
    worker = build_worker(ts_env.client, settings, task_queue=queue, **slow_update_worker_options())
    async with worker:
        yield EpisodeDriver(ts_env, pinned, queue, f"E-{uuid.uuid4().hex[:10]}")
        UPDATE_HOLD.seconds = 0
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
    UPDATE_HOLD.seconds = HOLD
    outcome = await asyncio.wait_for(driver.send("enquiry.recorded"), timeout=ANSWER_WITHIN)
    UPDATE_HOLD.seconds = 0
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


async def test_a_deadline_whose_timer_is_late_is_raised_before_the_next_event(
    driver: EpisodeDriver,
) -> None:
    """The server starts a timer when the task that asked for it completes, so a slow task
    makes the timer late by as long as it took. An event arriving in that gap falls after the
    deadline while the timer has not fired: it must be judged after the deadline, which is
    raised first, not meet the obligation as if nothing had been missed."""
    due = await send_after_late_timer(driver)
    state = await driver.state()
    alerts = [a for a in state.alerts if a.obligation_id == "systems_checks"]
    assert [a.escalation_level for a in alerts] == [1], "the missed deadline was raised"
    assert alerts[0].raised_at == due, "as at the instant it fell due"
    checks = state.obligation("systems_checks")
    assert checks is not None and checks.status is ObligationStatus.MET
    assert checks.met_at is not None and checks.met_at > due
    kinds = [e.type.rsplit(".", 2)[-2:] for e in state.timeline]
    assert kinds.index(["alert", "triggered"]) < kinds.index(["enquiry", "recorded"])
    await driver.close()
