"""The durable alert delivery against a real webhook receiver: progress is heartbeated after
every alert a sink takes, and a retried attempt sends only what the sink has not taken."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.alerts import (
    DELIVERY_HEARTBEAT_TIMEOUT,
    SEND_TIMEOUT,
    AlertActivities,
    WebhookSink,
)
from mispers.domain.messages import AlertBatch, DeliverAlertsInput
from mispers.domain.state import Alert
from mispers.domain.types import ObligationKind, Rank
from testkit.receivers import webhook_receiver

AT = dt.datetime(2026, 11, 30, 3, 0, tzinfo=dt.UTC)


def alert(n: int) -> Alert:
    return Alert(
        alert_id=f"E-1:supervisor_review:L{n}",
        episode_id="E-1",
        obligation_id="supervisor_review",
        kind=ObligationKind.SUPERVISOR_REVIEW,
        due_at=AT,
        escalation_level=n,
        rank=Rank.INSPECTOR,
        raised_at=AT,
        scheduled_at=AT,
    )


def test_the_heartbeat_timeout_outlasts_one_send() -> None:
    assert DELIVERY_HEARTBEAT_TIMEOUT > SEND_TIMEOUT


async def test_a_retried_delivery_sends_each_alert_once() -> None:
    batch = AlertBatch(batch_id="b-1", alerts=[alert(n) for n in range(1, 5)])
    ids = [a.alert_id for a in batch.alerts]
    with webhook_receiver() as hook:
        hook.ok_before_failing, hook.fail_next = 2, 1  # the third alert's POST fails once
        activities = AlertActivities([WebhookSink(hook.url)])
        first = ActivityEnvironment()
        beats: list[Any] = []
        first.on_heartbeat = lambda *details: beats.append(details[0])
        with pytest.raises(ApplicationError, match="webhook"):
            await first.run(activities.deliver_alerts, DeliverAlertsInput(batch=batch))
        # one heartbeat per alert taken, each with the progress so far
        assert [b["sent"]["webhook"] for b in beats] == [ids[:1], ids[:2]]

        retry = ActivityEnvironment()
        retry.info = dataclasses.replace(first.info, attempt=2, heartbeat_details=[beats[-1]])
        assert await retry.run(activities.deliver_alerts, DeliverAlertsInput(batch=batch)) == [
            "webhook"
        ]
        assert [body["alert_id"] for body in hook.bodies()] == ids


async def test_heartbeats_of_a_delivery_started_before_per_alert_progress_resume() -> None:
    """A delivery in flight across the upgrade heartbeated the sinks done as a plain list."""
    batch = AlertBatch(batch_id="b-2", alerts=[alert(1)])
    with webhook_receiver() as hook:
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, attempt=3, heartbeat_details=[["webhook"]])
        done = await env.run(
            AlertActivities([WebhookSink(hook.url)]).deliver_alerts,
            DeliverAlertsInput(batch=batch),
        )
        assert done == ["webhook"] and hook.bodies() == []
