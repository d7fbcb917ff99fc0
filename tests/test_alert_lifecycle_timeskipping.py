"""The alert lifecycle over hours of episode time on the time-skipping server: acknowledged then
met (resolved, nothing further), acknowledged then left (re-triggered, the acknowledger paged
again, the next rank alerted), a constable's acknowledgement of an inspector's page, and
acknowledging a resolved alert."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.testing import WorkflowEnvironment

from activities.alerts import (
    AlertActivities,
    AlertSink,
    Notice,
    Pager,
    pager_from_settings,
    sinks_from_settings,
)
from mispers.config import Settings
from mispers.domain import state_memo
from mispers.domain.events import Actor
from mispers.domain.messages import AlertDelivery, DeliverAlertsInput, DeliverAlertsOnceInput
from mispers.domain.state import Alert
from mispers.domain.types import AlertState, Role
from mispers.engine.client import EventRejected, SubmitOutcome, read_state_memo, submit_event
from mispers.policy import PinnedPolicy
from testkit.factories import event
from testkit.receivers import WebhookReceiver, smtp_server, webhook_receiver
from tests.conftest import eventually, register_search_attributes, start_time_skipping_server
from tests.harness import STARTED, EpisodeDriver, terminate_running, work_in_flight
from worker import build_worker

pytestmark = pytest.mark.integration

DUTY_DESK = "duty.desk@force.test"  # MISPERS_ALERT_EMAIL_TO: when the rota names nobody
ROTA = """rank,person_id,email,days,start,end
sergeant,SGT-ON,sgt.on@force.test,*,00:00,00:00
sergeant,SGT-1,sgt1@force.test,*,00:00,00:00
inspector,INSP-ON,insp.on@force.test,*,00:00,00:00
"""


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as server:
        yield Mailbox(*server)


@dataclass
class Mailbox:
    host: str
    port: int
    box: Any

    def to(self, address: str) -> list[Message]:
        return [m for m in self.box.received() if m["To"] == address]


@pytest.fixture
async def driver(
    ts_env: WorkflowEnvironment,
    pinned: PinnedPolicy,
    webhook: WebhookReceiver,
    mailbox: Mailbox,
    tmp_path: Path,
) -> AsyncIterator[EpisodeDriver]:
    rota = tmp_path / "rota.csv"
    rota.write_text(ROTA)
    queue = f"ts-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        data_dir=tmp_path,
        alert_webhook_url=webhook.url,
        rota=rota,
        smtp_host=mailbox.host,
        smtp_port=mailbox.port,
        alert_email_to=(DUTY_DESK,),
    )
    async with build_worker(ts_env.client, settings, task_queue=queue):
        yield EpisodeDriver(ts_env, pinned, queue, f"A-{uuid.uuid4().hex[:10]}")
        await terminate_running(ts_env, STARTED)


async def ack(
    d: EpisodeDriver, alert_id: str, by: str, role: Role | None = Role.SUPERVISOR
) -> SubmitOutcome:
    """An acknowledgement as the API sends it: the actor is the token's."""
    when = await d.now()
    ev = event("alert.acknowledged", d.episode_id, when, {"alert_id": alert_id, "by": by})
    if role is not None:
        ev = ev.model_copy(update={"actor": Actor(subject=by, role=role)})
    return await submit_event(d.client, ev, d.pinned, d.task_queue)


async def alert(d: EpisodeDriver, alert_id: str) -> Alert:
    found = next((a for a in (await d.state()).alerts if a.alert_id == alert_id), None)
    assert found is not None, alert_id
    return found


def rota_settings(tmp_path: Path, webhook: WebhookReceiver) -> Settings:
    """A worker's settings with the duty rota above and the webhook as its sink."""
    rota = tmp_path / "rota.csv"
    rota.write_text(ROTA)
    return Settings(data_dir=tmp_path, alert_webhook_url=webhook.url, rota=rota)


async def raise_first_alert(d: EpisodeDriver) -> str:
    """Reported, then the systems checks left late: the id of the sergeant's alert."""
    await d.send("episode.reported")
    await d.skip(hours=1, minutes=5)
    return f"{d.episode_id}:systems_checks:L1"


def steps(webhook: WebhookReceiver, alert_id: str) -> list[tuple[str, Any]]:
    return [
        (b["transition"], b.get("reason")) for b in webhook.bodies() if b["alert_id"] == alert_id
    ]


async def test_acknowledged_then_met_is_resolved_and_alerts_no_more(
    driver: EpisodeDriver, webhook: WebhookReceiver
) -> None:
    await driver.send("episode.reported")  # medium: systems checks due in 1 h, an officer's
    await driver.skip(hours=1, minutes=5)
    l1 = f"{driver.episode_id}:systems_checks:L1"
    paged = await eventually(lambda: alert(driver, l1), lambda a: a.recipient is not None)
    assert paged.state is AlertState.TRIGGERED and paged.rank.value == "sergeant"
    assert paged.recipient is not None and paged.recipient.person_id == "SGT-ON"
    assert paged.ack_url and "/ack?token=" in paged.ack_url

    assert (await ack(driver, l1, "SGT-1")).status == "accepted"
    taken = await alert(driver, l1)
    assert taken.state is AlertState.ACKNOWLEDGED and taken.acknowledged_by == "SGT-1"
    assert taken.ack_pauses_escalation and taken.ack_expires_at is not None
    assert (await ack(driver, l1, "SGT-1")).status == "duplicate"

    await driver.send("enquiry.recorded")  # systems checks done
    await driver.skip(hours=6)
    state = await driver.state()
    done = next(a for a in state.alerts if a.alert_id == l1)
    assert done.state is AlertState.RESOLVED and done.resolved_at is not None
    assert [a.alert_id for a in state.alerts if a.obligation_id == "systems_checks"] == [l1]
    await eventually(
        lambda: steps(webhook, l1),
        lambda s: s == [("triggered", None), ("acknowledged", None), ("resolved", None)],
    )
    bodies = [b for b in webhook.bodies() if b["alert_id"] == l1]
    assert all(b["dedup_key"] == l1 for b in bodies)
    assert bodies[-1]["state"] == "resolved" and bodies[-1]["recipient"]["person_id"] == "SGT-ON"

    # The timeline: the trigger (naming who was paged) and the resolution as Mispers' own
    # entries; the acknowledgement once, as the event it came as.
    steps_in_timeline = [
        (e.type, e.event_id, e.source, e.actor, e.data.get("recipient"))
        for e in (await driver.state()).timeline
        if e.data.get("alert_id") == l1
    ]
    ack_event = next(e[1] for e in steps_in_timeline if e[0] == "mispers.alert.acknowledged")
    assert steps_in_timeline == [
        ("mispers.alert.triggered", f"{l1}:triggered", "mispers", "mispers", "SGT-ON"),
        ("mispers.alert.acknowledged", ack_event, "test/cad", "SGT-1", None),
        ("mispers.alert.resolved", f"{l1}:resolved", "mispers", "mispers", "SGT-ON"),
    ]

    with pytest.raises(EventRejected) as refused:
        await ack(driver, l1, "SGT-ON")
    assert refused.value.refusal.code == "alert_resolved"
    assert refused.value.refusal.details["state"] == "resolved"
    with pytest.raises(EventRejected) as unknown:
        await ack(driver, f"{driver.episode_id}:systems_checks:L9", "SGT-ON")
    assert unknown.value.refusal.code == "unknown_alert"


async def test_acknowledgement_that_lapses_retriggers_repages_and_escalates_one_rank(
    driver: EpisodeDriver, webhook: WebhookReceiver
) -> None:
    await driver.send("episode.reported")
    # L1 (sergeant) at 1 h; without an acknowledgement L2 (inspector) would follow at 3 h.
    await driver.skip(hours=2, minutes=55)
    l1, l2 = (f"{driver.episode_id}:systems_checks:L{n}" for n in (1, 2))
    assert (await ack(driver, l1, "SGT-1")).status == "accepted"
    expires = (await alert(driver, l1)).ack_expires_at
    assert expires is not None

    await driver.skip(hours=1)  # past 3 h: paused, nothing raised
    ids = {a.alert_id for a in (await driver.state()).alerts}
    assert l2 not in ids
    assert (await alert(driver, l1)).state is AlertState.ACKNOWLEDGED

    await driver.skip(hours=1, minutes=5)  # the acknowledgement (2 h at medium) lapses
    state = await driver.state()
    again = next(a for a in state.alerts if a.alert_id == l1)
    assert again.state is AlertState.TRIGGERED and again.ack_timeouts == 1
    nxt = next(a for a in state.alerts if a.alert_id == l2)
    assert nxt.rank.value == "inspector" and nxt.scheduled_at == expires
    assert [a.alert_id for a in state.alerts if a.obligation_id == "systems_checks"] == [l1, l2]

    repage = await eventually(
        lambda: [b for b in webhook.bodies() if b["alert_id"] == l1 and b.get("reason")],
        bool,
    )
    assert repage[0]["transition"] == "triggered" and repage[0]["reason"] == "ack_timeout"
    assert repage[0]["recipient"]["person_id"] == "SGT-1"  # the acknowledger, paged again
    assert "/ack?token=" in repage[0]["ack_url"]
    up = await eventually(lambda: [b for b in webhook.bodies() if b["alert_id"] == l2], bool)
    assert up[0]["transition"] == "triggered" and up[0]["recipient"]["person_id"] == "INSP-ON"
    timeline = {e.event_id: e for e in (await driver.state()).timeline}
    lapsed = timeline[f"{l1}:retriggered:1"]
    assert lapsed.type == "mispers.alert.retriggered" and lapsed.time == expires
    assert lapsed.data["reason"] == "ack_timeout" and lapsed.data["acknowledged_by"] == "SGT-1"
    assert lapsed.data["recipient"] == "SGT-1"  # the acknowledger, paged again
    assert timeline[f"{l2}:triggered"].data["recipient"] == "INSP-ON"
    assert (await ack(driver, l1, "SGT-1")).status == "accepted"  # a new promise is taken


async def test_a_constables_ack_is_recorded_but_does_not_silence_an_inspectors_page(
    driver: EpisodeDriver, webhook: WebhookReceiver, mailbox: Mailbox
) -> None:
    await driver.send("episode.reported")
    await driver.send("enquiry.recorded")
    await driver.send("social_services.contacted")
    unstaffed = ("mispers_alerts_unstaffed_total", {"rank": "superintendent"})
    before = REGISTRY.get_sample_value(*unstaffed) or 0.0
    # The sergeant's review (4 h at medium) is missed: the inspector is paged at 4 h.
    await driver.skip(hours=4, minutes=5)
    l1, l2 = (f"{driver.episode_id}:supervisor_review:L{n}" for n in (1, 2))
    page = await alert(driver, l1)
    assert page.rank.value == "inspector" and page.recipient is not None
    assert (await ack(driver, l1, "PC-12", Role.OFFICER)).status == "accepted"
    taken = await alert(driver, l1)
    assert taken.state is AlertState.ACKNOWLEDGED and taken.acknowledged_by == "PC-12"
    assert not taken.ack_pauses_escalation and taken.ack_expires_at is None
    timeline = [e for e in (await driver.state()).timeline if e.type.endswith("acknowledged")]
    assert timeline and timeline[-1].data["by"] == "PC-12"

    await driver.skip(hours=2)  # escalation goes on at its interval: superintendent at 6 h
    up = await eventually(lambda: alert(driver, l2), lambda a: a.unstaffed)
    assert up.rank.value == "superintendent"  # nobody on the rota for it: flagged
    assert up.recipient is None and up.ack_url  # the link goes to MISPERS_ALERT_EMAIL_TO
    assert (REGISTRY.get_sample_value(*unstaffed) or 0.0) == before + 1  # counted once

    # E-mail: the inspector on duty gets the page with the link; the unstaffed rank's page goes
    # to the duty desk, flagged.
    paged = await eventually(lambda: mailbox.to("insp.on@force.test"), bool)
    body = paged[0].get_payload()
    assert l1 in body and "Acknowledge: http" in body and "token=" in body
    desk = await eventually(lambda: mailbox.to(DUTY_DESK), bool)
    assert any(l2 in m.get_payload() and "Nobody is on duty" in m.get_payload() for m in desk)


async def test_the_listing_memo_stays_bounded_while_the_top_rank_is_realerted(
    driver: EpisodeDriver,
) -> None:
    await driver.send("episode.reported", {"initial_risk": "high"})
    await driver.skip(hours=8)  # systems checks (30 min) missed: the top rank every 30 min
    state = await driver.state()
    alerts = [a for a in state.alerts if a.obligation_id == "systems_checks"]
    raised = [a.alert_id for a in alerts]
    assert len(raised) > 10
    description = await driver.client.get_workflow_handle(f"episode-{driver.episode_id}").describe()
    memo = await description.memo_value("alerts")
    listed = [m["alert_id"] for m in memo if m["obligation_id"] == "systems_checks"]
    # The newest five of the obligation's unresolved alerts, and before them the newest of each
    # rank the ladder paged on its way up (the sergeant's first page among them).
    newest_of_rank = {a.rank: a.alert_id for a in alerts}
    earlier = [i for i in raised[:-5] if i in newest_of_rank.values()]
    assert listed == earlier + raised[-5:]
    assert raised[0] in listed and alerts[0].rank.value == "sergeant"
    assert len(listed) <= 5 + len(newest_of_rank)  # bounded however long the top rank waits
    assert {"state", "rank", "recipient", "raised_at"} <= set(memo[0])
    assert "ack_url" not in memo[0]  # a credential stays out of visibility


class CrashingDelivery(AlertActivities):
    """The delivery itself fails: its local round every time, its durable retries at first
    (a worker that dies mid-send, a round that runs out of time)."""

    failing_attempts = 2

    def __init__(self, sinks: list[AlertSink], pager: Pager) -> None:
        super().__init__(sinks, pager)
        self.crashes = 0

    @activity.defn(name="deliver_alerts_once")
    async def deliver_alerts_once(self, input: DeliverAlertsOnceInput) -> AlertDelivery:
        self.crashes += 1
        raise RuntimeError("the delivery round crashed")

    @activity.defn(name="deliver_alerts")
    async def deliver_alerts(self, input: DeliverAlertsInput) -> list[str]:
        if activity.info().attempt <= self.failing_attempts:
            self.crashes += 1
            raise RuntimeError("the delivery crashed")
        return await super().deliver_alerts(input)


async def test_who_was_paged_is_in_state_even_when_the_delivery_fails(
    ts_env: WorkflowEnvironment, pinned: PinnedPolicy, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    settings = rota_settings(tmp_path, webhook)
    crashing = CrashingDelivery(sinks_from_settings(settings), pager_from_settings(settings))
    queue = f"ts-{uuid.uuid4().hex[:8]}"
    async with build_worker(ts_env.client, settings, task_queue=queue, alert_activities=crashing):
        try:
            d = EpisodeDriver(ts_env, pinned, queue, f"A-{uuid.uuid4().hex[:10]}")
            l1 = await raise_first_alert(d)
            paged = await eventually(lambda: alert(d, l1), lambda a: a.recipient is not None)
            assert paged.recipient is not None and paged.recipient.person_id == "SGT-ON"
            assert paged.ack_url and "/ack?token=" in paged.ack_url
            entry = next(e for e in (await d.state()).timeline if e.event_id == f"{l1}:triggered")
            assert entry.data["recipient"] == "SGT-ON"
            # Delivered in the end, to the person and with the link the state recorded.
            sent = await eventually(
                lambda: [b for b in webhook.bodies() if b["alert_id"] == l1], bool
            )
            assert sent[0]["recipient"]["person_id"] == "SGT-ON"
            assert sent[0]["ack_url"] == paged.ack_url
            assert crashing.crashes >= 1 + CrashingDelivery.failing_attempts
        finally:
            # also when an assertion fails: a worker gone with work in flight holds the clock
            await terminate_running(ts_env, STARTED)


async def test_history_cost_of_an_acknowledged_alert(
    driver: EpisodeDriver, webhook: WebhookReceiver
) -> None:
    """Two episodes alike but for one acknowledgement: the history events it costs (the
    closing figure of bench/README.md), bounded so a change that bloats it is caught."""

    async def episode(acknowledged: bool) -> int:
        d = EpisodeDriver(
            driver.env,
            driver.pinned,
            driver.task_queue,
            f"H-{uuid.uuid4().hex[:10]}",
            f"CH-{uuid.uuid4().hex[:8]}",
        )
        await d.send("episode.reported")
        await d.skip(hours=1, minutes=5)
        l1 = f"{d.episode_id}:systems_checks:L1"
        await eventually(lambda: steps(webhook, l1), lambda s: s == [("triggered", None)])
        if acknowledged:
            assert (await ack(d, l1, "SGT-1")).status == "accepted"
        await d.send("enquiry.recorded")
        await eventually(lambda: steps(webhook, l1), lambda s: s[-1] == ("resolved", None))
        workflow_id = f"episode-{d.episode_id}"
        await eventually(lambda: work_in_flight(d.client, workflow_id), lambda n: n == 0)
        history = await d.client.get_workflow_handle(workflow_id).fetch_history()
        return len(history.events)

    plain = await episode(acknowledged=False)
    taken = await episode(acknowledged=True)
    print(
        f"\nhistory events: alert resolved unacknowledged {plain}, acknowledged then resolved "
        f"{taken}: {taken - plain} for the acknowledgement"
    )
    # measured 10: the Update (accepted, completed), its workflow task (3), the acknowledged
    # step's delivery marker, the memo and search attribute upserts, the timer moved to the
    # acknowledgement's expiry (cancelled, started)
    assert 0 < taken - plain <= 12


# Shifts on the Europe/London wall clock: the early one until 02:00, the late one from 02:00.
CLOCK_CHANGE_ROTA = """rank,person_id,email,days,start,end
sergeant,SGT-EARLY,sgt.early@force.test,*,00:00,02:00
sergeant,SGT-LATE,sgt.late@force.test,*,02:00,00:00
"""
# The clocks go forward at 01:00 UTC on the last Sunday of March 2027 (01:00 GMT → 02:00 BST).
SPRING_FORWARD = dt.datetime(2027, 3, 28, 1, 0, tzinfo=dt.UTC)


@pytest.fixture
async def own_clock() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of this test's own: it moves its clock months ahead, which the
    session's shared server must not see."""
    env = await start_time_skipping_server()
    async with env:
        await register_search_attributes(env.client)
        yield env


async def test_the_rota_pages_by_the_local_wall_clock_across_the_spring_clock_change(
    own_clock: WorkflowEnvironment, pinned: PinnedPolicy, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    rota = tmp_path / "rota.csv"
    rota.write_text(CLOCK_CHANGE_ROTA)
    settings = Settings(data_dir=tmp_path, alert_webhook_url=webhook.url, rota=rota)
    queue = f"ts-{uuid.uuid4().hex[:8]}"
    async with build_worker(own_clock.client, settings, task_queue=queue):
        # Reported at 00:30 GMT: the systems checks (1 h at medium) fall due at 01:30 UTC,
        # which is 02:30 BST on the wall clock: the late shift's, not the early one's.
        await own_clock.sleep(
            SPRING_FORWARD - dt.timedelta(minutes=30) - await own_clock.get_current_time()
        )
        d = EpisodeDriver(own_clock, pinned, queue, f"A-{uuid.uuid4().hex[:10]}")
        await d.send("episode.reported")
        await d.skip(hours=1, minutes=5)
        l1 = f"{d.episode_id}:systems_checks:L1"
        paged = await eventually(lambda: alert(d, l1), lambda a: a.recipient is not None)
        assert SPRING_FORWARD < paged.raised_at < SPRING_FORWARD + dt.timedelta(hours=1)
        assert paged.recipient is not None and paged.recipient.person_id == "SGT-LATE"
        sent = await eventually(lambda: [b for b in webhook.bodies() if b["alert_id"] == l1], bool)
        assert sent[0]["recipient"]["person_id"] == "SGT-LATE"
        await terminate_running(
            own_clock.client, [f"episode-{d.episode_id}", f"child-{d.child_ref}"]
        )


async def test_an_alert_wake_is_one_round_and_one_memo_write(
    driver: EpisodeDriver, webhook: WebhookReceiver
) -> None:
    """The task a deadline wakes raises the alert and leaves the memo to the delivery round,
    which addresses the alert and delivers it in one local activity; the memo is then written
    once, with who was paged: the wake costs one marker and one memo write, and a read of the
    memo names the recipient."""
    l1 = await raise_first_alert(driver)
    await eventually(lambda: steps(webhook, l1), lambda s: s == [("triggered", None)])
    workflow_id = f"episode-{driver.episode_id}"
    handle = driver.client.get_workflow_handle(workflow_id)
    await eventually(lambda: work_in_flight(driver.client, workflow_id), lambda n: n == 0)
    events = list((await handle.fetch_history()).events)
    fired = max(
        i for i, ev in enumerate(events) if ev.event_type == EventType.EVENT_TYPE_TIMER_FIRED
    )
    wake = events[fired:]
    kinds = [ev.event_type for ev in wake]
    assert local_activities(wake) == ["deliver_alerts_once"]
    assert kinds.count(EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED) == 1
    assert kinds.count(EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES) == 1
    assert len(wake) <= 8, [EventType.Name(k) for k in kinds]
    memo = await (await handle.describe()).memo_value("alerts")
    listed = next(m for m in memo if m["alert_id"] == l1)
    assert listed["recipient"]["person_id"] == "SGT-ON" and listed["state"] == "triggered"
    paged = await alert(driver, l1)
    assert paged.recipient is not None and paged.recipient.person_id == "SGT-ON"


@contextlib.asynccontextmanager
async def worker_with_sink(
    ts_env: WorkflowEnvironment,
    pinned: PinnedPolicy,
    webhook: WebhookReceiver,
    tmp_path: Path,
    sink: AlertSink,
) -> AsyncIterator[EpisodeDriver]:
    """A worker whose alerts go to the log, the webhook and `sink`; a driver for one episode,
    whose work is stopped however the test ends."""
    settings = rota_settings(tmp_path, webhook)
    activities = AlertActivities(
        [*sinks_from_settings(settings), sink], pager_from_settings(settings)
    )
    queue = f"ts-{uuid.uuid4().hex[:8]}"
    async with build_worker(ts_env.client, settings, task_queue=queue, alert_activities=activities):
        try:
            yield EpisodeDriver(ts_env, pinned, queue, f"A-{uuid.uuid4().hex[:10]}")
        finally:
            await terminate_running(ts_env, STARTED)


def local_activities(events: Iterable[HistoryEvent]) -> list[str]:
    """The types of the local activities `events` recorded, in order."""
    return [
        json.loads(ev.marker_recorded_event_attributes.details["data"].payloads[0].data)[
            "activity_type"
        ]
        for ev in events
        if ev.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and "data" in ev.marker_recorded_event_attributes.details
    ]


class HeldSink:
    """A pager that holds its rounds while `holding`, until released: a slow sink."""

    name = "held"

    def __init__(self) -> None:
        self.holding = False
        self.release = asyncio.Event()
        self.held = 0

    async def send(self, notices: Sequence[Notice], sent: Callable[[Alert], None]) -> None:
        if self.holding:
            self.held += 1
            await self.release.wait()
        for notice in notices:
            sent(notice.alert)


async def test_an_event_is_in_the_memo_when_its_update_answers_though_its_round_is_slow(
    ts_env: WorkflowEnvironment, pinned: PinnedPolicy, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """An acknowledgement's step goes to the sinks in a round the workflow task waits for; a
    task that raised alerts leaves its memo write to that round, but a task that recorded an
    event writes it itself, so the Update's answer is never ahead of the memo a read serves,
    however long a sink takes."""
    held = HeldSink()
    async with worker_with_sink(ts_env, pinned, webhook, tmp_path, held) as d:
        try:
            l1 = await raise_first_alert(d)
            await eventually(lambda: memo_alert(d, l1), lambda a: bool(a and a["recipient"]))
            held.holding = True
            assert (await ack(d, l1, "SGT-1")).status == "accepted"
            assert held.held == 1 and not held.release.is_set()  # its round still in flight
            listed = await memo_alert(d, l1)
            assert listed and listed["state"] == "acknowledged", listed
            kept = await read_state_memo(d.client, d.episode_id)
            assert isinstance(kept, str)
            [acked] = [a for a in state_memo.unpack(kept).alerts if a.alert_id == l1]
            assert acked.acknowledged_by == "SGT-1"
            held.release.set()
            await eventually(lambda: steps(webhook, l1), lambda s: ("acknowledged", None) in s)
        finally:
            held.release.set()  # before the worker stops


async def memo_alert(d: EpisodeDriver, alert_id: str) -> dict[str, Any] | None:
    handle = d.client.get_workflow_handle(f"episode-{d.episode_id}")
    memo = await (await handle.describe()).memo_value("alerts", [])
    return next((m for m in memo if m["alert_id"] == alert_id), None)


class FlakySink:
    """A pager down for its first round, which keeps what it is sent once it is back."""

    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0
        self.sent: list[Alert] = []

    async def send(self, notices: Sequence[Notice], sent: Callable[[Alert], None]) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("the pager is down")
        for notice in notices:
            self.sent.append(notice.alert)
            sent(notice.alert)


async def test_a_failing_sink_does_not_withhold_who_was_paged_and_its_retry_pages_them(
    ts_env: WorkflowEnvironment, pinned: PinnedPolicy, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """The first round answers who was paged though a sink failed in it; that is recorded at
    once, and the durable retry sends the same person the same link."""
    flaky = FlakySink()
    async with worker_with_sink(ts_env, pinned, webhook, tmp_path, flaky) as d:
        l1 = await raise_first_alert(d)
        paged = await eventually(lambda: alert(d, l1), lambda a: a.recipient is not None)
        assert paged.recipient is not None and paged.recipient.person_id == "SGT-ON"
        assert paged.ack_url
        retried = await eventually(lambda: list(flaky.sent), bool)
        assert flaky.calls == 2 and [a.alert_id for a in retried] == [l1]
        assert retried[0].recipient == paged.recipient and retried[0].ack_url == paged.ack_url
        assert [b["alert_id"] for b in webhook.bodies()] == [l1]  # the webhook once, at first
        history = await d.client.get_workflow_handle(f"episode-{d.episode_id}").fetch_history()
        # recorded from the round's own answer: no addressing on its own
        assert local_activities(history.events) == ["deliver_alerts_once"]
