"""The fault drill, shared by `bench/chaos.py` (1,000 episodes) and the suite's small
version (`tests/test_chaos_drill.py`): one implementation, two sizes.

The whole service runs as it does in production, each part its own process: the embedded
Temporal dev server on a SQLite file, one `mispers worker` and one `mispers api`. The driver
posts every episode's full event stream as CloudEvents over HTTP, many episodes at once, while
a chaos task SIGKILLs the worker (and starts a new one) and SIGKILLs the server (and restarts it
on the same file). Like a real client, the driver sends an event again when the answer was lost
or said the engine was unavailable: the same event id, so a second recording is the engine's
duty to refuse. A local webhook counts alert deliveries by `alert_id`.

Afterwards, for every episode: each event id is in the timeline exactly once, the status is the one
its stream implies, the alerts it raised are exactly those the rules give (the offline driver) for
what it recorded at the instants it ran, every alert due was raised (or, a repeat of the top rank
whose timer ran late, collapsed into the next) within the allowance for lateness, and every alert
raised reached the webhook; every history is scanned for failed workflow tasks and non-determinism.
The drill fails on any of these, on a failed workflow task, and on a part that died without the
drill killing it (it is restarted so the run can finish, and reported). The events carry the test
factories' synthetic child; nothing about a child is ever printed: the figures are counts, and
events are named by their ids only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import enum
import json
import os
import re
import resource
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import Client, WorkflowHistory

from bench.common import console, cpu_seconds
from mispers.api.auth import load_secret, mint_token
from mispers.config import Settings, load_settings
from mispers.dev import Child, DevStack, fresh_file, http_ok, port_open
from mispers.domain.alert_lifecycle import SYSTEM_SOURCE
from mispers.domain.messages import (
    EPISODE_WORKFLOW,
    AlertDelivery,
    EpisodeInput,
    episode_workflow_id,
)
from mispers.domain.state import Alert, EpisodeState
from mispers.domain.types import Rank, Role
from mispers.engine.client import connect
from mispers.engine.embedded import start_dev_command
from mispers.offline.driver import recorded_stream, run_episode
from mispers.policy import pinned_policy
from mispers.security.keyring import KeyRing
from testkit.factories import envelope
from testkit.receivers import WebhookReceiver, free_port, webhook_receiver
from testkit.waiting import eventually
from worker import HEALTH_FILE
from workflows.episode import ADDRESS_BEFORE_DELIVERY, BASELINE, FIRST_BASELINE, ONE_ALERT_ROUND

SOURCE = "bench/chaos"
# A client gives up on one event only after this long of crashes and 503s in a row.
GIVE_UP_AFTER = 300.0
# Longer than the API's own 30 s bound on an engine call, so its 503 arrives before our timeout.
REQUEST_TIMEOUT = 45.0
RETRY_FIRST, RETRY_MAX = 0.2, 2.0
LOCAL_ACTIVITY_MARKER = "core_local_activity"
PATCH_MARKER, PATCH_DETAILS = "core_patch", "patch-data"
# The instant a running worker hands a local activity's answer to the workflow can follow the
# completion time its marker keeps (what a replay, and so the drill, uses) by milliseconds: an
# alert raised at such a wake is compared by id, rank and schedule exactly, and by the instant
# it was raised within this.
LOCAL_ACTIVITY_CLOCK = dt.timedelta(milliseconds=250)
NONDETERMINISM = re.compile(r"nondetermin", re.IGNORECASE)
# How late an episode may run a timer that fell due while the service ran: a workflow task's
# wait on a loaded 2-core machine (5.9 s seen with four other test suites running beside it).
LAG = dt.timedelta(seconds=10)
# A timer that fell due during a fault, or while a killed worker held the episode's workflow
# task, runs when the episode runs again: the task a killed worker held is handed to another
# after Temporal's workflow task timeout (the service keeps the default).
WORKFLOW_TASK_TIMEOUT = dt.timedelta(seconds=10)
# A workflow task that waited longer than this for a worker to take it (a restarted worker
# replaying every episode it picks up, on a machine whose cores are taken) is a stall too: a
# timer that falls due while it waits runs when the task is taken.
QUEUE_WAIT = dt.timedelta(seconds=1)


@dataclass(frozen=True)
class DrillConfig:
    data_dir: Path
    episodes: int = 1000
    concurrency: int = 48  # episodes in flight at once (each sends its events in order)
    worker_kills: int = 3
    server_restarts: int = 2
    api_kills: int = 1  # answers lost in flight: the driver's retries meet `duplicate`
    # 1 policy hour = 3 s: a systems check (1 h), a high-risk review (2 h) or an escalation
    # step (30 min-2 h) falls due while the streams run, and during every outage.
    time_scale: float = 1200.0
    outage: float = 5.0  # how long a killed process stays down before its restart
    settle: float = 180.0  # after the last answer: bound on the wait for every episode to close
    progress: bool = True
    # Faults planted to prove the drill sees them (its own tests): "crash" SIGKILLs the worker
    # behind the drill's back, as a crash would; "failing-task" starts a workflow whose every
    # workflow task fails.
    planted: tuple[str, ...] = ()


# --- the service, process by process ------------------------------------------------------


class Service:
    """Server, worker and API as child processes of the driver (logs in `<data_dir>/logs`)."""

    def __init__(self, config: DrillConfig, webhook_url: str) -> None:
        self.data_dir = config.data_dir
        self.temporal_port = free_port()
        self.http_port = free_port()
        ring = self.data_dir / "keys.json"
        KeyRing.create(ring)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MISPERS_")}
        self.env.update(
            {
                "MISPERS_DATA_DIR": str(self.data_dir),
                "MISPERS_TEMPORAL_ADDRESS": f"127.0.0.1:{self.temporal_port}",
                "MISPERS_HTTP_PORT": str(self.http_port),
                "MISPERS_KEYS": str(ring),
                "MISPERS_TIME_SCALE": f"{config.time_scale:g}",
                "MISPERS_ALERT_WEBHOOK_URL": webhook_url,
                "MISPERS_LOG_LEVEL": "warning",
                "MISPERS_TASK_QUEUE": "mispers",
            }
        )
        self.settings = load_settings(self.env)
        self.stack = DevStack(Settings(data_dir=self.data_dir))
        self.server: Child | None = None
        self.worker: Child | None = None
        self.api: Child | None = None
        self.cpu: dict[str, float] = collections.defaultdict(float)
        secret = load_secret(self.settings, env={})  # created here; the API reads the same file
        # The streams' reviews and approvals run up to a superintendent's rank.
        self.tokens = {
            role: mint_token(
                secret,
                role,
                f"chaos-{role.value}",
                rank=Rank.SUPERINTENDENT if role is Role.SUPERVISOR else None,
            )
            for role in Role
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def logs(self) -> Path:
        return self.data_dir / "logs"

    async def _ready(self, child: Child, probe: Callable[[], bool], what: str) -> None:
        await asyncio.to_thread(self.stack.wait_until, child, probe, what, 60.0)

    async def start_server(self) -> None:
        cmd = start_dev_command(self.settings.temporal_db_path, self.temporal_port, ui=False)
        self.server = self.stack.spawn("temporal", cmd, self.env)
        port = self.temporal_port
        await self._ready(self.server, lambda: port_open(port), f"listening on {port}")

    async def start_worker(self) -> None:
        since = time.time()
        self.worker = self.stack.spawn("worker", [*_mispers(), "worker"], self.env)
        health = self.data_dir / HEALTH_FILE
        await self._ready(self.worker, lambda: fresh_file(health, since + 1), "worker polling")

    async def start_api(self) -> None:
        self.api = self.stack.spawn("api", [*_mispers(), "api"], self.env)
        url = f"{self.url}/healthz"
        await self._ready(self.api, lambda: http_ok(url), "API answering /healthz")

    def kill(self, child: Child | None) -> None:
        assert child is not None
        self._count_cpu(child)
        child.process.send_signal(signal.SIGKILL)
        child.process.wait()

    def stop(self) -> None:
        for child in (self.api, self.worker, self.server):
            if child is not None and child.process.poll() is None:
                self._count_cpu(child)
        self.stack.stop()

    def _count_cpu(self, child: Child) -> None:
        """CPU seconds a part used (read before it goes), summed over its restarts."""
        with contextlib.suppress(OSError):
            self.cpu[child.name] += cpu_seconds(child.process.pid)

    def exited(self) -> list[str]:
        """The parts that died without being killed by the drill."""
        parts = (self.server, self.worker, self.api)
        return [c.name for c in parts if c is not None and c.process.poll() is not None]


def _mispers() -> list[str]:
    return [sys.executable, "-m", "mispers"]


# --- the event streams ---------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    kind: str
    role: Role
    data: Callable[[], dict[str, Any]]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def stream(index: int) -> list[Step]:
    """A full episode: report, contacts, enquiries, review, sightings, found, safe and well,
    return notification, return interview, closure requested and approved. Every fourth child
    is graded high (tighter deadlines), every fifth is looked after and placed out of area (two
    authorities to notify each way)."""
    risk = "high" if index % 4 == 0 else "medium"
    looked_after = index % 5 == 0
    authorities = ["Lambeth", "Croydon"] if looked_after else ["Lambeth"]
    child = {
        "child_ref": "",  # filled per run by Episode
        "looked_after": looked_after,
        "responsible_authority": "Lambeth",
        **({"host_authority": "Croydon"} if looked_after else {}),
    }

    def contact(authority: str, purpose: str) -> Step:
        return Step(
            "social_services.contacted",
            Role.OFFICER,
            lambda: {"authority": authority, "purpose": purpose},
        )

    return [
        Step(
            "episode.reported",
            Role.SYSTEM,
            lambda: {"child": child, "last_seen_at": _now(), "initial_risk": risk},
        ),
        *(contact(a, "missing_notification") for a in authorities),
        Step("enquiry.recorded", Role.SYSTEM, lambda: {"kind": "systems_checked"}),
        Step("risk.assessed", Role.SUPERVISOR, lambda: {"level": risk, "rank": "superintendent"}),
        Step("enquiry.recorded", Role.OFFICER, lambda: {"kind": "pnc_circulated"}),
        Step("sighting.reported", Role.SYSTEM, lambda: {"seen_at": _now()}),
        Step("sighting.reported", Role.OFFICER, lambda: {"seen_at": _now()}),
        Step("child.found", Role.OFFICER, lambda: {"found_at": _now()}),
        Step("safe_and_well.completed", Role.OFFICER, dict),
        *(contact(a, "return_notification") for a in authorities),
        Step("return_interview.completed", Role.OFFICER, dict),
        Step("closure.requested", Role.OFFICER, dict),
        Step("closure.approved", Role.SUPERVISOR, lambda: {"rank": "inspector"}),
    ]


def implied_status(kinds: list[str]) -> str:
    if "closure.approved" in kinds:
        return "closed"
    return "found" if "child.found" in kinds else "missing"


@dataclass
class Episode:
    episode_id: str
    child_ref: str
    steps: list[Step]
    event_ids: list[str] = field(default_factory=list)

    def body(self, number: int, step: Step) -> dict[str, Any]:
        data = step.data()
        if step.kind == "episode.reported":
            data = {**data, "child": {**data["child"], "child_ref": self.child_ref}}
        event_id = f"{self.episode_id}.{number:02d}"
        return envelope(step.kind, self.episode_id, _now(), data, event_id=event_id, source=SOURCE)

    @property
    def expected_status(self) -> str:
        return implied_status([s.kind for s in self.steps])


# --- the driver ----------------------------------------------------------------------------


@dataclass
class Tally:
    """What the client saw."""

    sent: int = 0  # distinct events
    posts: int = 0  # HTTP attempts, retries included
    answered: int = 0
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    retried_events: int = 0
    transport_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    server_errors: collections.Counter[int] = field(default_factory=collections.Counter)
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
    gave_up: int = 0


async def post_until_answered(
    http: httpx.AsyncClient, body: dict[str, Any], token: str, tally: Tally
) -> None:
    """Post one event until the API gives a definitive answer, as a real client would: a lost
    connection, a timeout or a 5xx is sent again (same id); a 202 or a 4xx is final."""
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + GIVE_UP_AFTER
    delay = RETRY_FIRST
    content = json.dumps(body)
    headers = {"content-type": "application/cloudevents+json", "authorization": f"Bearer {token}"}
    attempts = 0
    tally.sent += 1
    while True:
        attempts += 1
        tally.posts += 1
        try:
            response = await http.post("/v1/events", content=content, headers=headers)
        except httpx.HTTPError as exc:
            tally.transport_errors[type(exc).__name__] += 1
        else:
            if response.status_code == 202:
                status = response.json()["status"]
                tally.answers[f"{status} (first attempt)" if attempts == 1 else status] += 1
                break
            if response.status_code < 500:
                problem = response.json().get("type", "").rsplit("/", 1)[-1]
                tally.refused[f"{body['type']} {response.status_code} {problem}"] += 1
                break
            tally.server_errors[response.status_code] += 1
        if loop.time() > give_up_at:
            tally.gave_up += 1
            break
        # Back-off between attempts: pacing a client's retries, not waiting for work to finish.
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX)
    tally.answered += 1
    if attempts > 1:
        tally.retried_events += 1


# --- the chaos ------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str  # "worker" | "server"
    at_fraction: float
    started: float = 0.0  # seconds since the drill began
    answered_before: int = 0
    back_after: float = 0.0  # kill to ready again, seconds


def plan_faults(worker_kills: int, server_restarts: int, api_kills: int = 0) -> list[Fault]:
    """Spread the faults evenly over 10-85 % of the answered events, taking the kinds in turn."""
    remaining = {"worker": worker_kills, "server": server_restarts, "api": api_kills}
    kinds: list[str] = []
    while any(remaining.values()):
        for kind, left in remaining.items():
            if left:
                kinds.append(kind)
                remaining[kind] = left - 1
    n = len(kinds)
    return [Fault(kind, 0.10 + 0.75 * (i + 1) / (n + 1)) for i, kind in enumerate(kinds)]


async def inject(fault: Fault, service: Service, outage: float) -> None:
    """SIGKILL one part, leave it down for `outage` seconds (deadlines keep falling due
    meanwhile: this is the outage itself, not a wait for work), then start a new one."""
    if fault.kind == "worker":
        service.kill(service.worker)
        await asyncio.sleep(outage)
        await service.start_worker()
    elif fault.kind == "server":
        service.kill(service.server)
        await asyncio.sleep(outage)
        await service.start_server()
    else:  # the API: requests in flight lose their answers, and the driver sends them again
        service.kill(service.api)
        await asyncio.sleep(outage)
        await service.start_api()


async def plant_failing_task(client: Client, task_queue: str) -> None:
    """A workflow whose tasks fail: an episode carrying a malformed register look-up raises in
    its loop on every attempt. Terminated once the failure is in its history (it would keep
    every later attempt failing, and the settle step waiting for it)."""
    pinned = pinned_policy(None, 1.0)
    handle = await client.start_workflow(
        EPISODE_WORKFLOW,
        EpisodeInput(episode_id="PLANTED", policy=pinned, pending_io=["location:malformed"]),
        id=episode_workflow_id("PLANTED"),
        task_queue=task_queue,
    )

    async def failed_tasks() -> int:
        history = await handle.fetch_history()
        failed = EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        return sum(1 for ev in history.events if ev.event_type == failed)

    await eventually(failed_tasks, lambda n: n >= 1, within=60)
    await handle.terminate("planted workflow-task failure seen")


# --- the checks -----------------------------------------------------------------------------


@dataclass
class Histories:
    executions: int = 0
    episode_runs: int = 0
    task_failures: collections.Counter[str] = field(default_factory=collections.Counter)
    failed_tasks: list[str] = field(default_factory=list)  # workflow id, event id, cause
    task_timeouts: int = 0
    nondeterminism: int = 0
    # Per episode workflow: the instants its workflow tasks ran (each completed task's start,
    # its `workflow.now()`), over all its runs.
    wakes: dict[str, list[dt.datetime]] = field(default_factory=dict)
    # Per episode workflow: each workflow task that timed out, from its start to its timeout
    # (held by a killed worker, or by one too busy to answer in time).
    stalls: dict[str, list[tuple[dt.datetime, dt.datetime]]] = field(default_factory=dict)
    # Workflow tasks that waited longer than QUEUE_WAIT for a worker, and the longest wait.
    queue_waits: int = 0
    longest_queue_wait: float = 0.0


async def scan_histories(client: Client) -> Histories:
    """Every run of every workflow (episodes, child records, continued runs included)."""
    found = Histories()
    executions = [e async for e in client.list_workflows("")]
    gate = asyncio.Semaphore(16)

    async def one(workflow_id: str, run_id: str, workflow_type: str) -> None:
        async with gate:
            history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        found.executions += 1
        found.episode_runs += workflow_type == EPISODE_WORKFLOW
        if workflow_type == EPISODE_WORKFLOW:
            found.wakes.setdefault(workflow_id, []).extend(await loop_wakes(client, history))
        stalls, waits = task_stalls(history)
        if stalls:
            found.stalls.setdefault(workflow_id, []).extend(stalls)
        found.queue_waits += len(waits)
        found.longest_queue_wait = max([found.longest_queue_wait, *waits])
        for ev in history.events:
            if ev.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                attrs = ev.workflow_task_failed_event_attributes
                cause = WorkflowTaskFailedCause.Name(attrs.cause).removeprefix(
                    "WORKFLOW_TASK_FAILED_CAUSE_"
                )
                found.task_failures[cause] += 1
                found.failed_tasks.append(f"{workflow_id} event {ev.event_id}: {cause}")
                if (
                    attrs.cause
                    == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR
                    or NONDETERMINISM.search(attrs.failure.message)
                ):
                    found.nondeterminism += 1
            elif ev.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
                found.task_timeouts += 1

    await asyncio.gather(*(one(e.id, e.run_id, e.workflow_type) for e in executions))
    return found


def task_stalls(
    history: WorkflowHistory,
) -> tuple[list[tuple[dt.datetime, dt.datetime]], list[float]]:
    """The spans in which the run's workflow tasks stalled, and the queue waits among them (in
    seconds): each task that timed out (from its start, or from its scheduling when no worker
    took it) and each that waited over QUEUE_WAIT for a worker (scheduling to start)."""
    stalls: list[tuple[dt.datetime, dt.datetime]] = []
    waits: list[float] = []
    started: dt.datetime | None = None
    scheduled: dt.datetime | None = None
    for ev in history.events:
        if ev.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            scheduled, started = _instant(ev.event_time), None
        elif ev.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            started = _instant(ev.event_time)
            if scheduled is not None and started - scheduled > QUEUE_WAIT:
                waits.append((started - scheduled).total_seconds())
                stalls.append((scheduled, started))
        elif ev.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
            held = started or scheduled
            if held is not None:
                stalls.append((held, _instant(ev.event_time)))
    return stalls, waits


# The activities whose completion wakes the episode's loop (workflows/episode.py: its I/O lanes).
IO_ACTIVITIES = {"sync_child_record", "check_location"}


async def loop_wakes(client: Client, history: WorkflowHistory) -> list[dt.datetime]:
    """The instants an episode's loop woke and stepped the rules (`workflow.now()` then), read
    from its history: each workflow task that began the run, handled a timer, an accepted
    event or an I/O answer; and each local activity that answered within a task (the SDK moves
    `workflow.now()` to its completion): a register look-up, or, in runs from before alerts were
    addressed in their delivery round, an alert round that paged someone or the addressing. A
    task that only heard of a delivery retried by the server does not wake it."""
    wakes: list[dt.datetime] = []
    kinds: dict[int, str] = {}
    started: dt.datetime | None = None
    woke = True  # the run's first task
    alerts_wake = AlertsWake.ROUND_THAT_PAGED  # how the run's alert activities wake it (patched)
    for ev in history.events:
        kind = ev.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            started = _instant(ev.event_time)
        elif kind == EventType.EVENT_TYPE_TIMER_FIRED:
            woke = True
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            kinds[ev.event_id] = ev.activity_task_scheduled_event_attributes.activity_type.name
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            scheduled = ev.activity_task_completed_event_attributes.scheduled_event_id
            woke = woke or kinds.get(scheduled) in IO_ACTIVITIES
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            if woke and started is not None:
                wakes.append(started)
            woke = False
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            if started is not None:  # accepted in the task just completed
                wakes.append(started)
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            alerts_wake = max(alerts_wake, ALERTS_WAKE_FROM.get(patch_id(ev) or "", alerts_wake))
            done = await _local_activity_wake(client, ev, alerts_wake)
            if done is not None:
                wakes.append(done)
    return sorted(set(wakes))


def patch_id(ev: Any) -> str | None:
    """The id of a `workflow.patched` marker; None for any other event."""
    if ev.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
        return None
    attrs = ev.marker_recorded_event_attributes
    if attrs.marker_name != PATCH_MARKER or PATCH_DETAILS not in attrs.details:
        return None
    payloads = attrs.details[PATCH_DETAILS].payloads
    return json.loads(payloads[0].data).get("id") if payloads else None


class AlertsWake(enum.IntEnum):
    """Which of an episode's alert activities wake its loop, by the markers its run recorded."""

    ROUND_THAT_PAGED = 0  # the delivery round, when it answered who was paged
    ADDRESSING = 1  # the addressing, a local activity of its own before the round
    NONE = 2  # neither: the round addresses, and writes the memo without waking the loop


ALERTS_WAKE_FROM = {
    ADDRESS_BEFORE_DELIVERY: AlertsWake.ADDRESSING,
    FIRST_BASELINE: AlertsWake.ADDRESSING,
    ONE_ALERT_ROUND: AlertsWake.NONE,
    BASELINE: AlertsWake.NONE,
}


async def _local_activity_wake(
    client: Client, ev: Any, alerts_wake: AlertsWake
) -> dt.datetime | None:
    """The instant a local activity's answer woke the loop, if it did (`AlertsWake` says which
    of the alerts' did)."""
    attrs = ev.marker_recorded_event_attributes
    if attrs.marker_name != LOCAL_ACTIVITY_MARKER or "data" not in attrs.details:
        return None
    data = json.loads(attrs.details["data"].payloads[0].data)
    done = data.get("complete_time")
    if not done or "result" not in attrs.details:
        return None  # failed: the loop goes on as if nothing was paged
    if data.get("activity_type") == "address_alerts":
        if alerts_wake is not AlertsWake.ADDRESSING:
            return None
        # its answer is recorded, and the loop woken, whatever it says
    elif data.get("activity_type") == "deliver_alerts_once":
        if alerts_wake is not AlertsWake.ROUND_THAT_PAGED:
            return None
        payloads = list(attrs.details["result"].payloads)
        [delivery] = await client.data_converter.decode(payloads, [AlertDelivery])
        if not delivery.paged:
            return None
    elif data.get("activity_type") not in IO_ACTIVITIES:
        return None
    ns = int(done.get("seconds", 0)) * 1_000_000_000 + int(done.get("nanos", 0))
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC)


def _instant(stamp: Any) -> dt.datetime:
    """A history event's time as the SDK turns it into `workflow.now()`."""
    return dt.datetime.fromtimestamp(stamp.ToNanoseconds() / 1e9, dt.UTC)


def nondeterminism_in_logs(logs: Path) -> int:
    path = logs / "worker.log"
    if not path.exists():
        return 0
    with path.open(errors="replace") as lines:
        return sum(1 for line in lines if NONDETERMINISM.search(line))


@dataclass
class AlertJudgement:
    """The alerts the rules owe for what each episode recorded, against those it raised."""

    owed: dict[str, Alert] = field(default_factory=dict)  # each timer run the instant it is due
    raised: set[str] = field(default_factory=set)
    # The rules stepped again at the instants each episode's workflow tasks ran (read from its
    # history): what it raised must be exactly this, by id, rank and scheduled instant (and
    # raised instant, within LOCAL_ACTIVITY_CLOCK).
    unlike_derivation: list[str] = field(default_factory=list)
    raised_not_owed: list[str] = field(default_factory=list)
    # Owed at the instant due but not raised: the episode ran late, within the allowance, and an
    # event recorded meanwhile met the obligation first, or missed re-alerts of the top rank
    # collapsed into one (by rule).
    overtaken: list[str] = field(default_factory=list)
    # Owed, and raised (or overtaken) later than the allowance: a lost or stalled timer.
    too_late: list[str] = field(default_factory=list)
    worst_lateness: float = 0.0  # seconds, over every owed alert
    worst_lateness_outside_faults: float = 0.0  # and outside timed-out workflow tasks


@dataclass
class Report:
    config: DrillConfig
    tally: Tally
    faults: list[Fault]
    histories: Histories
    log_nondeterminism: int
    unplanned_exits: list[str]
    recorded: int
    lost: int
    duplicated: int
    unexpected: int
    wrong_status: collections.Counter[str]
    unread: int
    alerts_due: int
    alerts_delivered: int
    alert_posts: int
    spurious_alerts: int
    alerts: AlertJudgement = field(default_factory=AlertJudgement)
    raised_not_delivered: list[str] = field(default_factory=list)
    startup_seconds: float = 0.0
    stream_seconds: float = 0.0
    checks_seconds: float = 0.0
    settle_seconds: float = 0.0
    wall_seconds: float = 0.0
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def failures(self) -> list[str]:
        """Every broken promise, in words; empty when the drill passed."""
        out = []
        if self.lost:
            out.append(f"{self.lost} event(s) lost")
        if self.duplicated:
            out.append(f"{self.duplicated} event(s) recorded more than once")
        if self.unexpected:
            out.append(f"{self.unexpected} timeline entries that were never sent")
        if self.histories.nondeterminism or self.log_nondeterminism:
            out.append("non-determinism errors")
        if self.unplanned_exits:
            out.append(f"died without being killed: {', '.join(self.unplanned_exits)}")
        if self.histories.task_failures:
            out.append(f"failed workflow tasks: {dict(self.histories.task_failures)}")
        if self.wrong_status:
            out.append(f"wrong final status: {dict(self.wrong_status)}")
        if self.unread:
            out.append(f"{self.unread} episode(s) could not be read")
        a = self.alerts
        if a.unlike_derivation:
            out.append(
                f"{len(a.unlike_derivation)} alert(s) unlike the rules' derivation at the "
                "instants the episodes ran"
            )
        if a.raised_not_owed:
            out.append(f"{len(a.raised_not_owed)} alert(s) raised but owed by no rule")
        if a.too_late:
            out.append(f"{len(a.too_late)} alert(s) later than the allowance")
        if self.raised_not_delivered:
            out.append(f"{len(self.raised_not_delivered)} raised alert(s) never delivered")
        if self.tally.refused or self.tally.gave_up:
            out.append(f"events refused {dict(self.tally.refused)}, gave up {self.tally.gave_up}")
        return out

    def lines(self) -> list[str]:
        t, h, a = self.tally, self.histories, self.alerts
        rate = t.sent / self.stream_seconds if self.stream_seconds else 0.0
        fault_lines = [
            f"  {f.kind:<6} SIGKILL at {f.started:6.1f} s after {f.answered_before} answers; "
            f"ready again {f.back_after:.1f} s later"
            for f in self.faults
        ]
        return [
            f"episodes {self.config.episodes}, concurrency {self.config.concurrency}, "
            f"time scale {self.config.time_scale:g}, outage {self.config.outage:g} s",
            "faults:",
            *fault_lines,
            f"  unplanned exits: {self.unplanned_exits or 'none'}",
            f"events sent {t.sent}; recorded {self.recorded}; lost {self.lost}; "
            f"duplicated {self.duplicated}; never sent but recorded {self.unexpected}",
            f"  posts {t.posts} ({t.posts - t.sent} retries, {t.retried_events} events retried); "
            f"answers {dict(sorted(t.answers.items()))}",
            f"  transport errors {dict(t.transport_errors)}; 5xx {dict(t.server_errors)}; "
            f"4xx {dict(t.refused)}; gave up {t.gave_up}",
            f"episodes with the wrong status: {sum(self.wrong_status.values())}"
            f"{' ' + str(dict(self.wrong_status)) if self.wrong_status else ''}; "
            f"unreadable: {self.unread}",
            f"alerts due {self.alerts_due} (owed by the rules, each timer run when due); raised "
            f"{len(a.raised)}; overtaken while an episode ran late {len(a.overtaken)}; "
            f"unlike the derivation at the instants the episodes ran "
            f"{len(a.unlike_derivation)}; raised but owed by no rule {len(a.raised_not_owed)}",
            f"  lateness: worst {a.worst_lateness:.1f} s, outside faults and timed-out tasks "
            f"{a.worst_lateness_outside_faults:.1f} s (allowed {LAG.total_seconds():g} s, or "
            f"to {LAG.total_seconds():g} s past such a stall); later than that "
            f"{len(a.too_late)}",
            f"delivered {self.alerts_delivered} of those raised ({self.alert_posts} webhook "
            f"posts, {self.alert_posts - self.alerts_delivered} repeats); delivered but never "
            f"raised {self.spurious_alerts}",
            *[f"  unlike the derivation: {x}" for x in a.unlike_derivation[:10]],
            *[f"  raised, owed by no rule: {x}" for x in a.raised_not_owed[:10]],
            *[f"  later than allowed: {x}" for x in a.too_late[:10]],
            *[f"  raised, never delivered: {a}" for a in self.raised_not_delivered[:10]],
            f"workflow runs {h.executions} ({h.episode_runs} episode runs); workflow task "
            f"failures {sum(h.task_failures.values())} {dict(h.task_failures)}; "
            f"task timeouts {h.task_timeouts}; tasks that waited over "
            f"{QUEUE_WAIT.total_seconds():g} s for a worker {h.queue_waits} "
            f"(longest {h.longest_queue_wait:.1f} s)",
            *[f"  failed workflow task: {where}" for where in h.failed_tasks],
            f"non-determinism errors: {h.nondeterminism} in histories, "
            f"{self.log_nondeterminism} in worker logs",
            f"start-up {self.startup_seconds:.1f} s; streams {self.stream_seconds:.1f} s "
            f"({rate:.1f} events/s); settle {self.settle_seconds:.1f} s; checks "
            f"{self.checks_seconds:.1f} s; wall {self.wall_seconds:.1f} s",
            "CPU seconds: "
            + ", ".join(f"{name} {secs:.0f}" for name, secs in self.cpu_seconds.items()),
        ]


# --- the run --------------------------------------------------------------------------------


async def read_states(
    http: httpx.AsyncClient, token: str, episode_ids: list[str]
) -> dict[str, dict[str, Any]]:
    """Every episode's state through the API (`GET /v1/episodes/{id}`); one that cannot be read
    in three tries is left out, and counted as unreadable."""
    gate = asyncio.Semaphore(8)
    states: dict[str, dict[str, Any]] = {}
    headers = {"authorization": f"Bearer {token}"}

    async def one(episode_id: str) -> None:
        async with gate:
            for _ in range(3):
                with contextlib.suppress(httpx.HTTPError):
                    response = await http.get(f"/v1/episodes/{episode_id}", headers=headers)
                    if response.status_code == 200:
                        states[episode_id] = response.json()
                        return

    await asyncio.gather(*(one(e) for e in episode_ids))
    return states


async def run_drill(config: DrillConfig) -> Report:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    began = time.monotonic()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    run = uuid.uuid4().hex[:6]
    episodes = [
        Episode(f"CH-{run}-{i:04d}", f"C-{run}-{i:04d}", stream(i)) for i in range(config.episodes)
    ]
    total = sum(len(e.steps) for e in episodes)
    tally = Tally()
    faults = plan_faults(config.worker_kills, config.server_restarts, config.api_kills)
    unplanned: list[str] = []
    asleep: list[tuple[dt.datetime, dt.datetime]] = []

    with webhook_receiver() as hook:
        service = Service(config, hook.url)
        try:
            await service.start_server()
            await asyncio.gather(service.start_worker(), service.start_api())
            startup_seconds = time.monotonic() - began
            client = await connect(service.settings)
            if "failing-task" in config.planted:
                await plant_failing_task(client, service.settings.task_queue)
            progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[note]}"),
                TimeElapsedColumn(),
                console=console,
                disable=not config.progress,
            )
            limits = httpx.Limits(max_connections=config.concurrency + 8)
            async with httpx.AsyncClient(
                base_url=service.url, timeout=REQUEST_TIMEOUT, limits=limits
            ) as http:
                with progress:
                    bar = progress.add_task("events", total=total, note="")
                    streams_began = time.monotonic()
                    done = asyncio.Event()
                    chaos = asyncio.create_task(
                        _chaos(
                            config,
                            service,
                            faults,
                            tally,
                            total,
                            began,
                            done,
                            unplanned,
                            asleep,
                            lambda note: progress.update(bar, note=note),
                        )
                    )
                    gate = asyncio.Semaphore(config.concurrency)

                    async def drive(episode: Episode) -> None:
                        async with gate:
                            for number, step in enumerate(episode.steps, 1):
                                body = episode.body(number, step)
                                episode.event_ids.append(body["id"])
                                await post_until_answered(
                                    http, body, service.tokens[step.role], tally
                                )
                                progress.advance(bar)

                    await asyncio.gather(*(drive(e) for e in episodes))
                    stream_seconds = time.monotonic() - streams_began
                    done.set()
                    await chaos
                    progress.update(bar, note="settling: waiting for every episode to close")
                    settle_began = time.monotonic()
                    running = f"WorkflowType = '{EPISODE_WORKFLOW}' AND ExecutionStatus = 'Running'"
                    # Past the bound, what is still open shows as wrong statuses below.
                    with contextlib.suppress(AssertionError):
                        await eventually(
                            lambda: client.count_workflows(running),
                            lambda c: c.count == 0,
                            within=config.settle,
                            interval=0.5,
                        )
                    settle_seconds = time.monotonic() - settle_began
                    progress.update(bar, note="reading every state, scanning every history")
                    checks_began = time.monotonic()
                    settled_at = dt.datetime.now(dt.UTC)
                    states, histories = await asyncio.gather(
                        read_states(
                            http, service.tokens[Role.AUDITOR], [e.episode_id for e in episodes]
                        ),
                        scan_histories(client),
                    )
                    checks_seconds = time.monotonic() - checks_began
                    progress.update(bar, note="done")
            unplanned += service.exited()
        finally:
            service.stop()
        report = _check(
            config,
            episodes,
            states,
            hook,
            tally,
            faults,
            histories,
            unplanned,
            service.logs,
            settled_at,
            asleep,
        )
    report.startup_seconds = startup_seconds
    report.stream_seconds = stream_seconds
    report.checks_seconds = checks_seconds
    report.settle_seconds = settle_seconds
    report.wall_seconds = time.monotonic() - began
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report.cpu_seconds = {
        **{name: service.cpu[name] for name in ("temporal", "worker", "api")},
        "driver": usage.ru_utime + usage.ru_stime,
    }
    return report


async def _chaos(
    config: DrillConfig,
    service: Service,
    faults: list[Fault],
    tally: Tally,
    total: int,
    began: float,
    done: asyncio.Event,
    unplanned: list[str],
    asleep: list[tuple[dt.datetime, dt.datetime]],
    note: Callable[[str], None],
) -> None:
    """Fire each fault once its share of answers is in; restart any part that died unbidden.
    Each span without a worker or a server is noted in `asleep`: episodes raise no alert then."""
    pending = list(faults)
    crash_at = 0.5 * total if "crash" in config.planted else None
    crashed: dt.datetime | None = None
    began_wall = dt.datetime.now(dt.UTC)
    while pending or not done.is_set():
        if crash_at is not None and tally.answered >= crash_at:
            crash_at = None
            note("planted: the worker crashes")
            crashed = dt.datetime.now(dt.UTC)
            service.kill(service.worker)
        if pending and tally.answered >= pending[0].at_fraction * total:
            fault = pending.pop(0)
            fault.started = time.monotonic() - began
            fault.answered_before = tally.answered
            note(f"{fault.kind} killed")
            down = dt.datetime.now(dt.UTC)
            await inject(fault, service, config.outage)
            if fault.kind != "api":
                asleep.append((down, dt.datetime.now(dt.UTC)))
            fault.back_after = time.monotonic() - began - fault.started
            note(f"{fault.kind} back after {fault.back_after:.1f} s")
            continue
        for name in service.exited():
            unplanned.append(name)
            note(f"{name} exited unbidden: restarting")
            if name == "temporal":
                await service.start_server()
            elif name == "worker":
                await service.start_worker()
            else:
                await service.start_api()
            if name != "api":
                asleep.append((crashed if crashed else began_wall, dt.datetime.now(dt.UTC)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout=0.2)


def stall_spans(
    asleep: list[tuple[dt.datetime, dt.datetime]],
    timed_out: list[tuple[dt.datetime, dt.datetime]],
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The spans in which a timer that falls due runs late, overlaps merged: from just before a
    worker or server went down (a task it held) until it was back and a held task handed on;
    and, for one episode, each workflow task of it that timed out (from its start to the
    timeout, when the next attempt is handed out) or waited over QUEUE_WAIT for a worker (from
    its scheduling to its start)."""
    spans: list[tuple[dt.datetime, dt.datetime]] = []
    raw = [(down - LAG, up + WORKFLOW_TASK_TIMEOUT) for down, up in asleep]
    raw += [(started - LAG, ended) for started, ended in timed_out]
    for start, end in sorted(raw):
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


def run_by(at: dt.datetime, spans: list[tuple[dt.datetime, dt.datetime]]) -> dt.datetime:
    """The latest instant a timer due `at` may run: LAG after it, or after the fault span it
    falls in."""
    for start, end in spans:
        if start <= at <= end:
            return end + LAG
    return at + LAG


def judge_alerts(
    episodes: list[Episode],
    states: dict[str, dict[str, Any]],
    histories: Histories,
    settled_at: dt.datetime,
    asleep: list[tuple[dt.datetime, dt.datetime]],
    policy: Any,
) -> AlertJudgement:
    """Derive each episode's alerts with the product's offline driver from the events as the
    episode recorded them (the instants in its timeline, not the client's send and answer):
    once with every timer run the instant it falls due (the alerts due), once at the instants
    its workflow actually ran (which must give exactly what it raised). The two differ only by
    lateness, which must stay within the allowance: `LAG`, or to `LAG` past the stall (a fault,
    a timed-out workflow task) the timer fell due in."""
    judged = AlertJudgement()
    for episode in episodes:
        data = states.get(episode.episode_id)
        if data is None:
            continue
        state = EpisodeState.model_validate(data)
        stream = recorded_stream(state)
        raised = {a.alert_id: a for a in state.alerts}
        judged.raised.update(raised)
        owed = run_episode(episode.episode_id, stream, policy, until=settled_at).alerts
        judged.owed.update((a.alert_id, a) for a in owed)
        workflow_id = episode_workflow_id(episode.episode_id)
        wakes = histories.wakes.get(workflow_id, [])
        spans = stall_spans(asleep, histories.stalls.get(workflow_id, []))
        at_wakes = {
            a.alert_id: a
            for a in run_episode(
                episode.episode_id, stream, policy, until=settled_at, wakes=wakes
            ).alerts
        }
        for alert_id in sorted(raised.keys() | at_wakes.keys()):
            got, want = raised.get(alert_id), at_wakes.get(alert_id)
            if (
                got is None
                or want is None
                or _moment(got) != _moment(want)
                or abs(got.raised_at - want.raised_at) > LOCAL_ACTIVITY_CLOCK
            ):
                judged.unlike_derivation.append(
                    f"{alert_id}: raised {_moment(got)}, derived {_moment(want)}"
                )
        owed_ids = {a.alert_id for a in owed}
        judged.raised_not_owed += sorted(raised.keys() - owed_ids)
        for alert in owed:
            if alert.alert_id in raised:
                # Timed from the instant the rules scheduled it at the wakes the episode had
                # (checked above to be the derivation's): after a stall, the top rank's repeats
                # run on from the wake that ended it, so a later repeat is due later than when
                # nothing runs late, and the stall's own lateness is judged at that wake.
                due = raised[alert.alert_id].scheduled_at
                ran = raised[alert.alert_id].raised_at
            else:
                due = alert.raised_at  # the instant the rules raise it when nothing runs late
                ran = next((w for w in sorted(wakes) if w >= due), settled_at)
                judged.overtaken.append(alert.alert_id)
            late = (ran - due).total_seconds()
            judged.worst_lateness = max(judged.worst_lateness, late)
            if run_by(due, []) == run_by(due, spans):
                judged.worst_lateness_outside_faults = max(
                    judged.worst_lateness_outside_faults, late
                )
            if ran > run_by(due, spans):
                judged.too_late.append(f"{alert.alert_id}: {late:.1f} s late")
    return judged


def _moment(alert: Alert | None) -> tuple[str, str] | None:
    if alert is None:
        return None
    return (alert.rank.value, alert.scheduled_at.isoformat())


def _check(
    config: DrillConfig,
    episodes: list[Episode],
    states: dict[str, dict[str, Any]],
    hook: WebhookReceiver,
    tally: Tally,
    faults: list[Fault],
    histories: Histories,
    unplanned: list[str],
    logs: Path,
    settled_at: dt.datetime,
    asleep: list[tuple[dt.datetime, dt.datetime]],
) -> Report:
    recorded = lost = duplicated = unexpected = 0
    wrong: collections.Counter[str] = collections.Counter()
    for episode in episodes:
        state = states.get(episode.episode_id)
        if state is None:
            lost += len(episode.event_ids)
            continue
        # Mispers' own entries (an alert's steps) were never sent, but each is kept once too.
        own = collections.Counter(
            e["event_id"] for e in state["timeline"] if e["source"] == SYSTEM_SOURCE
        )
        duplicated += sum(n - 1 for n in own.values())
        seen = collections.Counter(
            e["event_id"] for e in state["timeline"] if e["source"] != SYSTEM_SOURCE
        )
        for event_id in episode.event_ids:
            if seen[event_id] >= 1:
                recorded += 1
            else:
                lost += 1
            duplicated += max(seen[event_id] - 1, 0)
        unexpected += sum(n for event_id, n in seen.items() if event_id not in episode.event_ids)
        if state["status"] != episode.expected_status:
            wrong[f"{episode.expected_status}->{state['status']}"] += 1
    policy = pinned_policy(None, config.time_scale).policy
    judged = judge_alerts(episodes, states, histories, settled_at, asleep, policy)
    bodies = hook.bodies()
    delivered_ids = {body["alert_id"] for body in bodies}
    histories_nd = nondeterminism_in_logs(logs)
    return Report(
        config=config,
        tally=tally,
        faults=faults,
        histories=histories,
        log_nondeterminism=histories_nd,
        unplanned_exits=unplanned,
        recorded=recorded,
        lost=lost,
        duplicated=duplicated,
        unexpected=unexpected,
        wrong_status=wrong,
        unread=len(episodes) - len(states),
        alerts_due=len(judged.owed),
        alerts_delivered=len(judged.raised & delivered_ids),
        alert_posts=len(bodies),
        spurious_alerts=len(delivered_ids - judged.raised),
        alerts=judged,
        raised_not_delivered=sorted(judged.raised - delivered_ids),
    )
