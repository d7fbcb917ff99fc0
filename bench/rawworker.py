"""The engine's own ceiling: a trivial workflow that counts signals (or Updates) and ends after
the n-th,
run by `python -m bench.rawworker ADDRESS TASK_QUEUE` (a subprocess, like the Mispers worker)."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

SIGNAL = "event"


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


async def serve(address: str, task_queue: str) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Worker(client, task_queue=task_queue, workflows=[Trivial]):
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
