"""Scale-out drill: three `mispers worker` processes share one task queue on one dev
server; 200 episodes run to their first deadline; one worker is stopped with SIGTERM and one
killed with SIGKILL while alerts are being delivered. Every episode must reach its expected
state and every alert that fell due must reach the webhook at least once.

The drill's policy is the shipped one with every duration stretched a hundredfold except the
systems-checks deadline (1 policy hour), so within the drill exactly one alert can fall due per
episode: `systems_checks` level 1, to the sergeant. Half the episodes record their systems
checks at once (met: no alert may come); the other half miss them (overdue: one alert each).
Each worker posts to its own webhook path, which shows how the deliveries spread.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from mispers.cli.health import check_worker_health
from mispers.config import load_settings
from mispers.domain.messages import episode_workflow_id
from mispers.domain.state import EpisodeState
from mispers.domain.types import ObligationKind, ObligationStatus
from mispers.engine.client import connect, get_episode_state, submit_event
from mispers.policy import PinnedPolicy, Policy, load_policy
from mispers.security.keyring import KeyRing
from testkit.factories import event
from testkit.receivers import WebhookReceiver, webhook_receiver
from tests.conftest import eventually

pytestmark = pytest.mark.integration

EPISODES = 200
WORKERS = ("w1", "w2", "w3")
SCALE = 300.0  # 1 policy hour = 12 s
STRETCH = 100  # every other duration x100: nothing else falls due during the drill


def drill_policy() -> PinnedPolicy:
    """The shipped policy, stretched so that only `systems_checks` falls due (after 1 h)."""

    def stretch(value: Any) -> Any:
        if isinstance(value, dt.timedelta):
            return value * STRETCH
        if isinstance(value, dict):
            return {k: stretch(v) for k, v in value.items()}
        if isinstance(value, list):
            return [stretch(v) for v in value]
        return value

    raw = load_policy().model_dump()
    alerts = raw.pop("alerts")  # retry back-off stays as shipped
    stretched = stretch(raw)
    stretched["alerts"] = alerts
    stretched["obligations"]["systems_checks"]["due"] = {
        level: dt.timedelta(hours=1) for level in ("high", "medium", "low", "very_low")
    }
    stretched["version"] = "scale-out-drill"
    return PinnedPolicy.pin(Policy.model_validate(stretched), SCALE)


@dataclass
class WorkerProc:
    name: str
    proc: subprocess.Popen[bytes]
    data_dir: Path
    log: Path

    @property
    def health(self) -> Path:
        return self.data_dir / "worker.health"


def mispers_bin() -> str:
    return str(Path(sys.executable).parent / "mispers")


def worker_env(
    base: dict[str, str], name: str, data_dir: Path, hook: WebhookReceiver
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISPERS_")}
    env.update(base)
    env["MISPERS_DATA_DIR"] = str(data_dir)
    env["MISPERS_ALERT_WEBHOOK_URL"] = hook.url_for(name)
    return env


async def start_episodes(
    client: Client, pinned: PinnedPolicy, queue: str, run: str
) -> tuple[list[str], list[str]]:
    """Report every episode; the even ones record their systems checks straight away."""
    met: list[str] = []
    missed: list[str] = []
    gate = asyncio.Semaphore(24)

    async def one(i: int) -> None:
        episode_id = f"SO-{run}-{i:03d}"
        async with gate:
            now = dt.datetime.now(dt.UTC)
            reported = event(
                "episode.reported",
                episode_id,
                now,
                {
                    "child": {"child_ref": f"C-{run}-{i:03d}"},
                    "last_seen_at": now.isoformat(),
                    "initial_risk": "medium",
                },
                event_id=f"r-{i}",
            )
            assert (await submit_event(client, reported, pinned, queue)).status == "accepted"
            if i % 2 == 0:
                checks = event(
                    "enquiry.recorded",
                    episode_id,
                    now,
                    {"kind": "systems_checked"},
                    event_id=f"c-{i}",
                )
                assert (await submit_event(client, checks, pinned, queue)).status == "accepted"
                met.append(episode_id)
            else:
                missed.append(episode_id)

    await asyncio.gather(*(one(i) for i in range(EPISODES)))
    return sorted(met), sorted(missed)


async def states(client: Client, episode_ids: list[str]) -> dict[str, EpisodeState]:
    gate = asyncio.Semaphore(16)

    async def one(episode_id: str) -> tuple[str, EpisodeState]:
        async with gate:
            state = await get_episode_state(client, episode_id)
            assert state is not None, episode_id
            return episode_id, state

    return dict(await asyncio.gather(*(one(e) for e in episode_ids)))


async def task_identities(client: Client, episode_ids: list[str]) -> collections.Counter[str]:
    """Workflow tasks completed and activities started, by worker identity, from the histories."""
    counts: collections.Counter[str] = collections.Counter()
    gate = asyncio.Semaphore(16)

    async def one(episode_id: str) -> None:
        async with gate:
            history = await client.get_workflow_handle(
                episode_workflow_id(episode_id)
            ).fetch_history()
        for ev in history.events:
            if ev.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                counts[f"workflow-task {ev.workflow_task_completed_event_attributes.identity}"] += 1
            elif ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                counts[f"activity {ev.activity_task_started_event_attributes.identity}"] += 1

    await asyncio.gather(*(one(e) for e in episode_ids))
    return counts


def health_probe(worker: WorkerProc, max_age: int) -> int:
    """`mispers worker-health` as the Kubernetes exec probe runs it, for this worker's pod."""
    return subprocess.run(
        [mispers_bin(), "worker-health", "--max-age", str(max_age)],
        env={**os.environ, "MISPERS_DATA_DIR": str(worker.data_dir)},
        capture_output=True,
        timeout=60,
    ).returncode


def stop(worker: WorkerProc) -> None:
    if worker.proc.poll() is None:
        worker.proc.kill()
    worker.proc.wait(timeout=10)


@pytest.mark.timeout(150)
async def test_three_workers_two_stopped_mid_run_lose_nothing(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    started = time.monotonic()
    run = uuid.uuid4().hex[:6]
    queue = f"drill-{run}"
    pinned = drill_policy()
    ring = tmp_path / "keys.json"
    KeyRing.create(ring)
    base = {
        "MISPERS_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "MISPERS_TEMPORAL_NAMESPACE": dev_env.client.namespace,
        "MISPERS_TASK_QUEUE": queue,
        "MISPERS_TIME_SCALE": f"{SCALE:g}",
        "MISPERS_KEYS": str(ring),
        "MISPERS_LOG_LEVEL": "warning",
    }
    # The test's own client goes through the service's settings and connect(): same key ring.
    client = await connect(load_settings({**base, "MISPERS_DATA_DIR": str(tmp_path)}))

    with webhook_receiver() as hook:
        workers: list[WorkerProc] = []
        try:
            for name in WORKERS:
                data_dir = tmp_path / name
                data_dir.mkdir()
                log = tmp_path / f"{name}.log"
                with open(log, "wb") as out:  # noqa: ASYNC230 - a local log file, opened once
                    proc = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
                        [mispers_bin(), "worker"],
                        env=worker_env(base, name, data_dir, hook),
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                workers.append(WorkerProc(name, proc, data_dir, log))
            by_pid = {str(w.proc.pid): w.name for w in workers}

            # Polling: each worker's health file is fresh (what the liveness probe reads).
            await eventually(
                lambda: [check_worker_health(w.health, max_age=10) for w in workers],
                lambda problems: all(p is None for p in problems),
                within=60,
                interval=0.2,
            )
            ready = time.monotonic()

            met, missed = await start_episodes(client, pinned, queue, run)
            reported = time.monotonic()

            # Mid-run: kill one worker hard once a third of the alerts are in, and stop another
            # gracefully at half; the survivor and Temporal's retries must deliver the rest.
            await eventually(hook.alert_ids, lambda ids: len(ids) >= len(missed) // 3, within=60)
            killed, drained, survivor = workers
            killed.proc.send_signal(signal.SIGKILL)
            at_kill = len(hook.alert_ids())
            await eventually(hook.alert_ids, lambda ids: len(ids) >= len(missed) // 2, within=60)
            drained.proc.send_signal(signal.SIGTERM)
            at_term = len(hook.alert_ids())

            expected = {f"{e}:systems_checks:L1" for e in missed}
            await eventually(hook.alert_ids, lambda ids: ids >= expected, within=60, interval=0.2)
            delivered = time.monotonic()

            # SIGTERM drains: the worker finishes its in-flight tasks and exits 0 in its grace.
            assert await asyncio.to_thread(drained.proc.wait, 30) == 0, drained.log.read_text()
            assert killed.proc.wait(timeout=5) == -signal.SIGKILL
            assert survivor.proc.poll() is None, survivor.log.read_text()
            # The liveness probe's command tells the dead worker from the live one.
            assert await asyncio.to_thread(health_probe, survivor, 10) == 0
            await eventually(
                lambda: asyncio.to_thread(health_probe, killed, 2), lambda rc: rc == 1, within=20
            )

            # Every episode reached its expected state.
            final = await states(client, met + missed)
            for episode_id, state in final.items():
                checks = [o for o in state.obligations if o.kind is ObligationKind.SYSTEMS_CHECKS]
                assert len(checks) == 1, (episode_id, state.obligations)
                assert state.status.value == "missing"
                others = [
                    o for o in state.obligations if o.kind is not ObligationKind.SYSTEMS_CHECKS
                ]
                assert all(o.status is ObligationStatus.OPEN for o in others), episode_id
                if episode_id in met:
                    assert checks[0].status is ObligationStatus.MET, episode_id
                    assert state.alerts == [] and state.overdue_count == 0, episode_id
                else:
                    assert checks[0].status is ObligationStatus.OVERDUE, episode_id
                    assert checks[0].escalation_level == 1, episode_id
                    assert [a.alert_id for a in state.alerts] == [f"{episode_id}:systems_checks:L1"]
                    assert state.alerts[0].rank.value == "sergeant"
            # Nothing was lost and nothing spurious was sent (repeats are allowed: at least once).
            posts = hook.posts()
            received = collections.Counter(body["alert_id"] for _, body in posts)
            assert set(received) == expected
            assert all(body["escalation_level"] == 1 for _, body in posts)
            spread = collections.Counter(path for path, _ in posts)
            tasks = await task_identities(client, met + missed)
        finally:
            for worker in workers:
                stop(worker)

    named = collections.Counter(
        {
            f"{kind} {by_pid.get(ident.split('@')[0], ident)}": n
            for key, n in tasks.items()
            for kind, ident in [key.rsplit(" ", 1)]
        }
    )
    print(
        f"\nscale-out drill: {EPISODES} episodes ({len(met)} met, {len(missed)} overdue), "
        f"{len(expected)} alerts due, {len(received)} delivered ({sum(received.values())} posts, "
        f"{sum(received.values()) - len(received)} repeats)\n"
        f"  workers ready {ready - started:.1f} s; episodes reported in {reported - ready:.1f} s; "
        f"all alerts delivered {delivered - reported:.1f} s after the last report; "
        f"wall {time.monotonic() - started:.1f} s\n"
        f"  SIGKILL w1 after {at_kill} alerts, SIGTERM w2 after {at_term}\n"
        f"  webhook posts by worker: {dict(sorted(spread.items()))}\n"
        f"  episode tasks by worker: {dict(sorted(named.items()))}"
    )
    assert len(spread) >= 2, "the deliveries should have spread over more than one worker"
