"""Memory of one cached episode: a worker in this process with a cache larger than the episodes
it runs, on the embedded dev server; RSS and Python heap (tracemalloc) are read after warm-up
(`--warm` episodes, so imports and the sandbox's first module loads are paid) and after
`--episodes` more, each reported (one Update-with-start) and left open in the cache.
Per episode = delta / episodes; child records (one workflow per child) are cached too, so the
figure is per episode with its child's record.

`--alerts K` reports the measured episodes under the policy scaled by `--time-scale` (the
warm ones stay at real time, so they never change), lets each run late until it has raised K
alerts, and reads RSS again: what an escalated episode costs, because a long-open episode in a
real cache carries its alerts."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import os
import tempfile
import tracemalloc
from pathlib import Path

from temporalio.client import Client

from bench.common import console, rss_mib, stack
from mispers.config import Settings
from mispers.engine.client import connect, get_episode_state, submit_event
from mispers.policy import PinnedPolicy, load_policy
from mispers.security.keyring import open_ring
from testkit.factories import event
from testkit.waiting import eventually
from worker import build_worker, workflow_runner


async def measure(args: argparse.Namespace) -> dict[str, float]:
    with stack() as st, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            temporal_address=st.address,
            task_queue="cachemem",
            worker_cache=args.warm + args.episodes + 100,
        )
        open_ring(settings, create=True)
        client = await connect(settings)
        real_time = PinnedPolicy.pin(load_policy(), 1.0)
        measured = PinnedPolicy.pin(load_policy(), args.time_scale) if args.alerts else real_time
        now = dt.datetime.now(dt.UTC)

        async def report(prefix: str, n: int, pinned: PinnedPolicy) -> None:
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
            await report("w", args.warm, real_time)
            gc.collect()
            tracemalloc.start()
            rss0, heap0 = rss_mib(os.getpid()), tracemalloc.get_traced_memory()[0]
            await report("m", args.episodes, measured)
            gc.collect()
            rss1, heap1 = rss_mib(os.getpid()), tracemalloc.get_traced_memory()[0]
            top = tracemalloc.take_snapshot().statistics("filename")[:8]
            tracemalloc.stop()
            if args.alerts:
                ids = [f"M-m{i}" for i in range(args.episodes)]
                await escalated(client, ids, args.alerts)
                gc.collect()
                rss2 = rss_mib(os.getpid())
    n = args.episodes
    runner = "sandboxed" if args.sandboxed else "unsandboxed"
    runner += ", one child" if args.one_child else ", a child each"
    console.print(
        f"{runner}: {n} episodes cached after {args.warm} warm (RSS {rss0:.0f} MiB): RSS "
        f"+{rss1 - rss0:.1f} MiB "
        f"({(rss1 - rss0) * 1024 / n:.0f} KiB per episode), Python heap "
        f"+{(heap1 - heap0) / 2**20:.1f} MiB ({(heap1 - heap0) / 1024 / n:.0f} KiB per episode)"
    )
    figures = {"rss_base_mib": rss0, "kib_per_new_episode": (rss1 - rss0) * 1024 / n}
    if args.alerts:
        figures["kib_per_escalated_episode"] = (rss2 - rss0) * 1024 / n
        console.print(
            f"after each of the {n} raised {args.alerts} alerts or more: RSS {rss2:.0f} MiB, "
            f"{figures['kib_per_escalated_episode']:.0f} KiB per escalated episode"
        )
    for stat in top:
        console.print(f"  {stat.size / 1024 / n:7.1f} KiB/episode  {stat.traceback[0].filename}")
    return figures


async def escalated(client: Client, ids: list[str], alerts: int) -> None:
    """Until each episode's state (its memo) holds `alerts` alerts, with progress shown."""

    async def short() -> list[str]:
        states = await asyncio.gather(*(get_episode_state(client, i) for i in ids))
        return [i for i, s in zip(ids, states, strict=True) if s is None or len(s.alerts) < alerts]

    def done(missing: list[str]) -> bool:
        console.print(f"  {len(ids) - len(missing)} of {len(ids)} episodes at {alerts} alerts")
        return not missing

    await eventually(short, done, within=600, interval=5)


def main(argv: list[str] | None = None) -> dict[str, float]:
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
    parser.add_argument(
        "--alerts",
        type=int,
        default=0,
        help="then let every episode raise this many alerts and measure again (0: do not)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=60.0,
        help="policy time scale of the measured episodes with --alerts (60: a 1-hour deadline "
        "falls in a minute, after the episodes are reported and measured new)",
    )
    return asyncio.run(measure(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
