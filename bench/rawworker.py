"""The engine's own ceiling: a trivial workflow that counts signals (or Updates) and ends after
the n-th, and the alert bench's raw peer: a trivial workflow that sleeps until each of its
alert times and posts the alert id to a webhook with a local activity (the path a Mispers
alert takes: timer, workflow task, local activity, HTTP), then stays open.
Run by `python -m bench.rawworker ADDRESS TASK_QUEUE [CACHE]` (a subprocess, like the Mispers
worker; CACHE is the worker's workflow cache, the SDK's 1,000 by default)."""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

SIGNAL = "event"
WAVES = "BenchAlertWaves"
POST_TIMEOUT = timedelta(seconds=30)


@workflow.defn(name="BenchTrivial")
class Trivial:
    def __init__(self) -> None:
        self.count = 0

    @workflow.run
    async def run(self, expected: int) -> int:
        await workflow.wait_condition(lambda: self.count >= expected)
        return self.count

    @workflow.signal(name=SIGNAL)
    def event(self, body: dict[str, Any]) -> None:
        self.count += 1

    @workflow.update(name=SIGNAL)
    def record(self, body: dict[str, Any]) -> int:
        """The same count as an Update: the caller waits for the worker's answer, as a Mispers
        event does (accepted or refused at once), instead of firing and forgetting."""
        self.count += 1
        return self.count

    @workflow.query(name="count")
    def counted(self) -> int:
        return self.count


@workflow.defn(name=WAVES)
class AlertWaves:
    """Input: {"url": webhook, "alerts": [[alert_id, epoch seconds due], ...]}."""

    @workflow.run
    async def run(self, spec: dict[str, Any]) -> None:
        due: dict[float, list[str]] = {}
        for alert_id, at in spec["alerts"]:
            due.setdefault(float(at), []).append(alert_id)
        for at in sorted(due):
            await asyncio.sleep(max(at - workflow.now().timestamp(), 0.001))
            await workflow.execute_local_activity(
                post_alerts,
                {"url": spec["url"], "alert_ids": due[at], "raised_at": workflow.now().isoformat()},
                start_to_close_timeout=POST_TIMEOUT,
            )
        await workflow.wait_condition(lambda: False)  # open to the end, as episodes are


class Poster:
    def __init__(self) -> None:
        import httpx  # the activity's, kept out of the workflow sandbox's imports

        self.http = httpx.AsyncClient(timeout=POST_TIMEOUT.total_seconds())


_POSTER: Poster | None = None


@activity.defn(name="post_alerts")
async def post_alerts(spec: dict[str, Any]) -> None:
    global _POSTER
    if _POSTER is None:
        _POSTER = Poster()
    for alert_id in spec["alert_ids"]:
        body = {"alert_id": alert_id, "raised_at": spec["raised_at"]}
        answer = await _POSTER.http.post(spec["url"], json=body)
        answer.raise_for_status()


async def serve(address: str, task_queue: str, cache: int = 1000) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[Trivial, AlertWaves],
        activities=[post_alerts],
        max_cached_workflows=cache,
    ):
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:4])))
