"""Episodes on the real dev server with real alert sinks (HTTP receiver, SMTP server)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from mispers.config import Settings
from mispers.engine.client import (
    EpisodeNotFound,
    EventRejected,
    get_child_record,
    get_episode_state,
)
from mispers.engine.search_attributes import EPISODE_FLAGS, OVERDUE_COUNT, RISK_LEVEL
from mispers.policy import PinnedPolicy, Policy
from testkit.receivers import WebhookReceiver, smtp_server, webhook_receiver
from tests.conftest import eventually
from tests.harness import EpisodeDriver
from worker import build_worker

pytestmark = pytest.mark.integration

# 1 policy hour = 0.25 s: a high-risk systems check (30 min) falls due after 125 ms.
SCALE = 14_400


@pytest.fixture
def fast_policy(policy: Policy) -> PinnedPolicy:
    return PinnedPolicy.pin(policy, SCALE)


@pytest.fixture
async def sinks(tmp_path: Path) -> AsyncIterator[tuple[WebhookReceiver, object, Settings]]:
    with webhook_receiver() as hook, smtp_server() as (host, port, mailbox):
        settings = Settings(
            data_dir=tmp_path,
            alert_webhook_url=hook.url,
            smtp_host=host,
            smtp_port=port,
            alert_email_to=("duty-inspector@force.example",),
        )
        yield hook, mailbox, settings


def _driver(env: WorkflowEnvironment, pinned: PinnedPolicy, queue: str) -> EpisodeDriver:
    return EpisodeDriver(
        env, pinned, queue, f"D-{uuid.uuid4().hex[:10]}", child_ref=f"C-{uuid.uuid4().hex[:6]}"
    )


async def test_missed_deadline_alerts_reach_webhook_and_email(
    dev_env: WorkflowEnvironment,
    fast_policy: PinnedPolicy,
    sinks: tuple[WebhookReceiver, object, Settings],
) -> None:
    hook, mailbox, settings = sinks
    queue = f"dev-{uuid.uuid4().hex[:8]}"
    async with build_worker(dev_env.client, settings, task_queue=queue):
        d = _driver(dev_env, fast_policy, queue)
        await d.send("episode.reported", {"initial_risk": "high"})
        first = f"{d.episode_id}:systems_checks:L1"
        bodies = await eventually(hook.bodies, lambda b: first in {x["alert_id"] for x in b})
        alert = next(b for b in bodies if b["alert_id"] == first)
        assert alert["rank"] == "sergeant" and alert["kind"] == "systems_checks"
        assert alert["episode_id"] == d.episode_id and alert["escalation_level"] == 1
        assert set(alert) >= {"obligation_id", "due_at", "raised_at"}
        messages = await eventually(
            mailbox.received,  # type: ignore[attr-defined]
            lambda ms: any(first in m.get_payload() for m in ms),
        )
        assert "duty-inspector@force.example" in messages[0]["To"]
        state = await d.state()
        assert state.overdue_count >= 1
        # Visibility carries the supervisor's view (and nothing personal).
        handle = dev_env.client.get_workflow_handle(f"episode-{d.episode_id}")
        desc = await eventually(
            handle.describe, lambda x: (x.typed_search_attributes.get(OVERDUE_COUNT) or 0) > 0
        )
        attrs = desc.typed_search_attributes
        assert attrs.get(RISK_LEVEL) == "high"
        assert not attrs.get(EPISODE_FLAGS)  # no flags yet: empty list reads back as unset
        listed = [
            w.id
            async for w in dev_env.client.list_workflows(
                f"RiskLevel='high' AND OverdueCount > 0 AND WorkflowId='episode-{d.episode_id}'"
            )
        ]
        assert listed == [f"episode-{d.episode_id}"]


async def test_a_failing_webhook_is_retried_until_delivered_without_blocking_email(
    dev_env: WorkflowEnvironment,
    fast_policy: PinnedPolicy,
    sinks: tuple[WebhookReceiver, object, Settings],
) -> None:
    hook, mailbox, settings = sinks
    hook.fail_next = 2
    queue = f"dev-{uuid.uuid4().hex[:8]}"
    async with build_worker(dev_env.client, settings, task_queue=queue):
        d = _driver(dev_env, fast_policy, queue)
        await d.send("episode.reported", {"initial_risk": "high"})
        first = f"{d.episode_id}:systems_checks:L1"
        await eventually(
            mailbox.received,  # type: ignore[attr-defined]
            lambda ms: any(first in m.get_payload() for m in ms),
        )
        await eventually(hook.alert_ids, lambda ids: first in ids, within=30)
        assert hook.failures == 2
        emailed = [m for m in mailbox.received() if first in m.get_payload()]  # type: ignore[attr-defined]
        assert len(emailed) == 1  # the e-mail sink was not re-sent by the webhook's retries


async def test_events_are_recorded_once_and_refusals_change_nothing(
    dev_env: WorkflowEnvironment, pinned: PinnedPolicy, tmp_path: Path
) -> None:
    queue = f"dev-{uuid.uuid4().hex[:8]}"
    async with build_worker(dev_env.client, Settings(data_dir=tmp_path), task_queue=queue):
        d = _driver(dev_env, pinned, queue)
        assert (await d.send("episode.reported", event_id="r-1")).status == "accepted"
        assert (await d.send("episode.reported", event_id="r-1")).status == "duplicate"
        assert (await d.send("enquiry.recorded", event_id="e-1")).status == "accepted"
        assert (await d.send("enquiry.recorded", event_id="e-1")).status == "duplicate"
        # the same id from another source is another event
        other = await d.send(
            "enquiry.recorded", {"kind": "cctv"}, event_id="e-1", source="test/rms"
        )
        assert other.status == "accepted"
        before = await d.state()
        with pytest.raises(EventRejected) as refused:
            await d.send("closure.requested")
        assert refused.value.refusal.code == "child_not_found"
        with pytest.raises(EventRejected) as below:
            await d.send("risk.assessed", {"level": "very_low", "rank": "inspector"})
        assert below.value.refusal.code == "below_floor"
        assert below.value.refusal.details["floor"] == "medium"
        after = await d.state()
        assert after.timeline == before.timeline
        assert [e.event_id for e in after.timeline].count("e-1") == 2
        with pytest.raises(EpisodeNotFound):
            await EpisodeDriver(dev_env, pinned, queue, "NEVER-REPORTED").send("enquiry.recorded")
        assert await get_episode_state(dev_env.client, "NEVER-REPORTED") is None


async def test_a_closed_episode_answers_duplicates_and_refuses_new_events(
    dev_env: WorkflowEnvironment, pinned: PinnedPolicy, tmp_path: Path
) -> None:
    queue = f"dev-{uuid.uuid4().hex[:8]}"
    async with build_worker(dev_env.client, Settings(data_dir=tmp_path), task_queue=queue):
        d = _driver(dev_env, pinned, queue)
        await d.send("episode.reported", event_id="r-1")
        await d.send("child.found")
        state = await d.state()
        waivers = [{"obligation_id": o.id, "reason": "drill"} for o in state.outstanding()]
        await d.send("closure.approved", {"waivers": waivers}, event_id="close-1")
        handle = dev_env.client.get_workflow_handle(f"episode-{d.episode_id}")
        await handle.result()
        assert (
            await d.send("closure.approved", {"waivers": waivers}, event_id="close-1")
        ).status == "duplicate"
        assert (await d.send("episode.reported", event_id="r-1")).status == "duplicate"
        with pytest.raises(EventRejected) as closed:
            await d.send("enquiry.recorded")
        assert closed.value.refusal.code == "episode_closed"
        with pytest.raises(EventRejected) as again:
            await d.send("episode.reported", event_id="r-2")
        assert again.value.refusal.code == "episode_closed"
        final = await d.state()
        assert final.status.value == "closed" and final.closed_at is not None
        assert final.closed_at <= dt.datetime.now(dt.UTC)


async def test_a_reassessment_that_tells_the_child_record_nothing_new_is_not_synced(
    dev_env: WorkflowEnvironment, pinned: PinnedPolicy, tmp_path: Path
) -> None:
    """The record keeps risk level, flags, status and where found: a review at the same level
    costs no activity (history size); a raise still reaches the record."""
    queue = f"dev-{uuid.uuid4().hex[:8]}"
    async with build_worker(dev_env.client, Settings(data_dir=tmp_path), task_queue=queue):
        d = _driver(dev_env, pinned, queue)
        await d.send("episode.reported")
        await d.send("risk.assessed", {"level": "medium", "rank": "inspector"})
        await d.send("risk.assessed", {"level": "high", "rank": "inspector"})

        async def record_risk() -> str | None:
            record = await get_child_record(dev_env.client, d.child_ref)
            return record.episodes[-1].risk_level if record and record.episodes else None

        await eventually(record_risk, lambda level: level == "high")
        handle = dev_env.client.get_workflow_handle(f"episode-{d.episode_id}")
        history = await handle.fetch_history()
        synced = [
            e
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
            and e.activity_task_scheduled_event_attributes.activity_type.name == "sync_child_record"
        ]
        assert len(synced) == 2  # the report and the raise; not the review at the same level


async def test_the_worker_keeps_as_many_workflows_cached_as_configured(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, worker_cache=8)
    worker = build_worker(dev_env.client, settings, task_queue="cache-size")
    assert worker.config()["max_cached_workflows"] == 8
