"""Whole episodes over days on the time-skipping test server: seconds of wall time."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from bench.drill import patch_id
from mispers.config import Settings
from mispers.domain.messages import episode_workflow_id
from mispers.domain.types import ObligationStatus
from mispers.engine.client import EventRejected
from mispers.policy import PinnedPolicy
from testkit.receivers import WebhookReceiver, webhook_receiver
from tests.conftest import eventually
from tests.harness import STARTED, EpisodeDriver, terminate_running
from worker import build_worker
from workflows.episode import BASELINE

pytestmark = pytest.mark.integration


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture
async def driver(
    ts_env: WorkflowEnvironment, pinned: PinnedPolicy, webhook: WebhookReceiver, tmp_path: Path
) -> AsyncIterator[EpisodeDriver]:
    queue = f"ts-{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=tmp_path, alert_webhook_url=webhook.url)
    async with build_worker(ts_env.client, settings, task_queue=queue):
        yield EpisodeDriver(ts_env, pinned, queue, f"E-{uuid.uuid4().hex[:10]}")
        await terminate_running(ts_env, STARTED)


async def test_seven_day_episode_escalates_through_every_rank_then_closes_with_waivers(
    driver: EpisodeDriver, webhook: WebhookReceiver
) -> None:
    started = time.monotonic()
    assert (await driver.send("episode.reported")).status == "accepted"
    await driver.send("enquiry.recorded")  # systems checks done
    await driver.send("social_services.contacted")  # missing notification
    state = await driver.state()
    assert state.status.value == "missing"
    assert state.risk is not None and state.risk.level.value == "medium"
    assert state.obligation("systems_checks").status is ObligationStatus.MET  # type: ignore[union-attr]

    # The sergeant's review (4 h at medium) is missed: inspector at 4 h, superintendent at 6 h,
    # and the top rank again each 2 h interval after.
    await driver.skip(hours=8, minutes=30)
    review = await driver.obligation("supervisor_review")
    assert review.status is ObligationStatus.OVERDUE
    assert review.escalation_level == 3
    ranks = [a.rank.value for a in (await driver.state()).alerts if a.obligation_id == review.id]
    assert ranks == ["inspector", "superintendent", "superintendent"]
    await eventually(
        webhook.alert_ids, lambda ids: {f"{driver.episode_id}:supervisor_review:L3"} <= ids
    )

    first_alert = f"{driver.episode_id}:supervisor_review:L1"
    await driver.send("alert.acknowledged", {"alert_id": first_alert, "by": "INSP-9"})
    acked = next(a for a in (await driver.state()).alerts if a.alert_id == first_alert)
    assert acked.acknowledged_by == "INSP-9"
    assert (await driver.obligation("supervisor_review")).status is ObligationStatus.OVERDUE

    await driver.send(
        "risk.assessed",
        {"level": "medium", "rank": "inspector", "assessed_by": "INSP-9", "rationale": "reviewed"},
    )
    state = await driver.state()
    assert state.obligation("supervisor_review").status is ObligationStatus.MET  # type: ignore[union-attr]
    assert state.obligation("risk_review:1").status is ObligationStatus.MET  # type: ignore[union-attr]
    assert state.obligation("risk_review:2") is not None

    # PNC circulation (48 h, owned by an officer) is missed: sergeant first.
    await driver.skip(days=3, hours=1)
    state = await driver.state()
    pnc_ranks = [a.rank.value for a in state.alerts if a.obligation_id == "pnc_circulated"]
    assert pnc_ranks[:3] == ["sergeant", "inspector", "superintendent"]
    meetings = [o for o in state.obligations if o.kind.value == "strategy_meeting"]
    assert meetings and "missing for more than 72 hours" in (meetings[0].reason or "")

    await driver.send("child.found")
    state = await driver.state()
    assert state.status.value == "found"
    assert state.obligation("risk_review:2").status is ObligationStatus.LAPSED  # type: ignore[union-attr]
    await driver.send("safe_and_well.completed")

    with pytest.raises(EventRejected) as refused:
        await driver.send("closure.requested")
    assert refused.value.refusal.code == "open_obligations"
    still_open = {o["id"] for o in refused.value.refusal.details["open_obligations"]}
    assert {"pnc_circulated", "return_interview", "social_services_notified_return"} <= still_open

    await driver.skip(days=3)
    state = await driver.state()
    outstanding = [o.id for o in state.outstanding()]
    waivers = [
        {"obligation_id": oid, "reason": f"reviewed: {oid} not needed"} for oid in outstanding
    ]
    with pytest.raises(EventRejected) as partial:
        await driver.send("closure.approved", {"waivers": waivers[:-1]})
    assert partial.value.refusal.code == "open_obligations"
    await driver.send("closure.approved", {"waivers": waivers})

    handle = driver.client.get_workflow_handle(f"episode-{driver.episode_id}")
    summary = await handle.result()  # the run completes once the episode is closed
    assert summary["status"] == "closed"
    state = await driver.state()
    assert state.status.value == "closed"
    waived = [o for o in state.obligations if o.status is ObligationStatus.WAIVED]
    assert {o.id for o in waived} == set(outstanding)
    assert all(o.closed_reason and o.waived_by == "SGT-7" for o in waived)
    delivered = webhook.alert_ids()
    assert {a.alert_id for a in state.alerts} <= delivered
    print(f"\n7-day episode: {len(state.alerts)} alerts, wall {time.monotonic() - started:.2f}s")


async def test_a_new_episode_records_one_patch_marker_for_every_behaviour(
    driver: EpisodeDriver, webhook: WebhookReceiver
) -> None:
    """Each `workflow.patched` a run asks for costs a marker and an upsert of
    `TemporalChangeVersion` (a visibility write); a run started after the baseline asks once,
    whatever paths it takes: events, the child record, an alert addressed and delivered
    locally, closure and its analytics export."""
    await driver.send("episode.reported")
    await driver.skip(hours=1, minutes=5)  # the systems checks are late: an alert
    checks_alert = f"{driver.episode_id}:systems_checks:L1"
    await eventually(webhook.alert_ids, lambda ids: checks_alert in ids)
    await driver.send("enquiry.recorded")
    await driver.close()
    handle = driver.client.get_workflow_handle(episode_workflow_id(driver.episode_id))
    await handle.result()  # closed: the export and the last deliveries are in the history too
    history = await handle.fetch_history()
    patches = [p for p in map(patch_id, history.events) if p is not None]
    assert patches == [BASELINE]
    change_versions = [
        ev
        for ev in history.events
        if ev.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
        and "TemporalChangeVersion"
        in ev.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
    ]
    assert len(change_versions) == 1
