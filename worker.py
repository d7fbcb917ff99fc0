"""The Mispers worker: runs the episode and child-record workflows and their activities.

`mispers worker` runs it alone (scaled out as many replicas); `mispers dev` runs it beside the
embedded server and the API."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.alerts import AlertActivities, AlertSink, pager_from_settings, sinks_from_settings
from activities.analytics import AnalyticsActivities
from activities.child_record import ChildRecordActivities
from activities.locations import LocationActivities, LocationsRegister
from mispers.analytics.store import open_store
from mispers.config import Settings
from mispers.engine.client import connect
from mispers.logs import get_logger
from workflows.child_record import ChildRecord
from workflows.episode import MissingChildEpisode

log = get_logger("mispers.worker")

HEALTH_FILE = "worker.health"
HEALTH_INTERVAL = 5.0

# What the sandbox would pass through rather than re-import for every workflow run (it runs
# only as a measured peer now, `workflow_runner(sandboxed=True)`).
PASSTHROUGH = ("mispers", "activities", "pydantic", "pydantic_core", "annotated_types")


def workflow_runner(*, sandboxed: bool = False) -> WorkflowRunner:
    """The runner the worker and every replay use. Unsandboxed: the sandbox re-imports the
    workflow modules for each cached workflow (a quarter of a cached episode's memory, and the
    CPU of every replay). What it guards, workflow code that reads a clock, draws randomness or
    does I/O, is refused before merge by the static ban (`ruff-deterministic.toml`) on every
    module the workflows reach, and caught at replay by the recorded histories. The sandboxed
    runner stays for measuring what it costs."""
    if not sandboxed:
        return UnsandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )


def build_worker(
    client: Client,
    settings: Settings,
    *,
    task_queue: str | None = None,
    sinks: list[AlertSink] | None = None,
    identity: str | None = None,
    alert_activities: AlertActivities | None = None,
    **options: Any,
) -> Worker:
    """`options` are passed to the SDK's `Worker` over these defaults (tests use it to
    intercept workflow tasks)."""
    register = LocationsRegister(settings.locations_of_concern)
    alerts = alert_activities or AlertActivities(
        sinks if sinks is not None else sinks_from_settings(settings), pager_from_settings(settings)
    )
    child_records = ChildRecordActivities(client)
    locations = LocationActivities(register)
    analytics = AnalyticsActivities(
        open_store(settings.data_dir, settings.analytics) if settings.analytics_export else None
    )
    defaults: dict[str, Any] = {
        "workflow_runner": workflow_runner(),
        "graceful_shutdown_timeout": timedelta(seconds=20),
        "max_cached_workflows": settings.worker_cache,
        "identity": identity,
    }
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[MissingChildEpisode, ChildRecord],
        activities=[
            alerts.deliver_alerts,
            alerts.deliver_alerts_once,
            alerts.address_alerts,
            child_records.sync_child_record,
            locations.check_location,
            analytics.export_episode_record,
        ],
        **(defaults | options),
    )


def worker_identity() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


async def _touch_health(path: Path) -> None:
    """A file whose age tells a liveness probe this worker's loop is alive."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        now = time.time()
        with open(path, "a"):  # noqa: ASYNC230 (a few bytes of metadata every 5 s)
            os.utime(path, (now, now))
        await asyncio.sleep(HEALTH_INTERVAL)


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Poll until `stop` is set (or SIGINT/SIGTERM); in-flight tasks finish before exit."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    client = await connect(settings)
    identity = worker_identity()
    worker = build_worker(client, settings, identity=identity)
    health = asyncio.create_task(_touch_health(settings.data_dir / HEALTH_FILE))
    if settings.worker_metrics_port is not None:
        # Alerts raised by rank (activities/alerts.py) for Prometheus; the API relays them too.
        from prometheus_client import start_http_server

        start_http_server(settings.worker_metrics_port, addr=settings.http_host)
    log.info(
        "worker started",
        task_queue=settings.task_queue,
        identity=identity,
        temporal=settings.effective_temporal_address,
    )
    try:
        async with worker:
            await stop.wait()
            log.info("worker stopping: finishing in-flight tasks")
    finally:
        health.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await health
    log.info("worker stopped")
