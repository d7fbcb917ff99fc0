"""Memory of one cached episode: a worker in this process with a cache larger than the episodes
it runs, on the embedded dev server; RSS and Python heap (tracemalloc) are read after warm-up
(`--warm` episodes, so imports and the sandbox's first module loads are paid) and after
`--episodes` more, each reported (one Update-with-start) and left open in the cache.
Per episode = delta / episodes; child records (one workflow per child) are cached too, so the
figure is per episode with its child's record."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import os
import tempfile
import tracemalloc
from pathlib import Path

from bench.common import console, rss_mib, stack
from mispers.config import Settings
from mispers.engine.client import connect, submit_event
from mispers.policy import PinnedPolicy, load_policy
from mispers.security.keyring import open_ring
from testkit.factories import event
from worker import build_worker, workflow_runner


async def measure(args: argparse.Namespace) -> None:
    with stack() as st, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            temporal_address=st.address,
            task_queue="cachemem",
            worker_cache=args.warm + args.episodes + 100,
        )
        open_ring(settings, create=True)
        client = await connect(settings)
        pinned = PinnedPolicy.pin(load_policy(), 1.0)
        now = dt.datetime.now(dt.UTC)

        async def report(prefix: str, n: int) -> None:
            slots = asyncio.Semaphore(16)

            async def one(i: int) -> None:
                async with slots:
                    child = f"C-{prefix}" if args.one_child else f"C-{prefix}{i}"
                    body = {
                        "child": {"child_ref": child},
                        "last_seen_at": now.isoformat(),
                    }
                    await submit_event(
                        client,
                        event("episode.reported", f"M-{prefix}{i}", now, body),
                        pinned,
                        settings.task_queue,
                    )

            await asyncio.gather(*(one(i) for i in range(n)))

        chosen = workflow_runner(sandboxed=args.sandboxed)
        async with build_worker(client, settings, workflow_runner=chosen):
            await report("w", args.warm)
            gc.collect()
            tracemalloc.start()
            rss0, heap0 = rss_mib(os.getpid()), tracemalloc.get_traced_memory()[0]
            await report("m", args.episodes)
            gc.collect()
            rss1, heap1 = rss_mib(os.getpid()), tracemalloc.get_traced_memory()[0]
            top = tracemalloc.take_snapshot().statistics("filename")[:8]
            tracemalloc.stop()
    n = args.episodes
    runner = "sandboxed" if args.sandboxed else "unsandboxed"
    runner += ", one child" if args.one_child else ", a child each"
    console.print(
        f"{runner}: {n} episodes cached after {args.warm} warm (RSS {rss0:.0f} MiB): RSS "
        f"+{rss1 - rss0:.1f} MiB "
        f"({(rss1 - rss0) * 1024 / n:.0f} KiB per episode), Python heap "
        f"+{(heap1 - heap0) / 2**20:.1f} MiB ({(heap1 - heap0) / 1024 / n:.0f} KiB per episode)"
    )
    for stat in top:
        console.print(f"  {stat.size / 1024 / n:7.1f} KiB/episode  {stat.traceback[0].filename}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cachemem", description=__doc__)
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--warm", type=int, default=50)
    parser.add_argument(
        "--sandboxed",
        action="store_true",
        help="measure with the sandboxed workflow runner (the peer; the worker runs unsandboxed)",
    )
    parser.add_argument(
        "--one-child",
        action="store_true",
        help="every measured episode is of one child, so the figure is an episode's alone "
        "(without it, each episode brings its own child record into the cache)",
    )
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
