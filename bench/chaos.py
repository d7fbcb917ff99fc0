"""The fault drill: episodes' full event streams posted to the real API while the
worker, the embedded Temporal server and the API are SIGKILLed and restarted; then every
episode is checked. Exits 1 if anything was lost, recorded twice, non-deterministic, left in
the wrong status, or if an alert that fell due never reached the webhook.

    .venv/bin/python -m bench.chaos      # 1,000 episodes; 3 worker, 2 server, 1 API kills
    .venv/bin/python -m bench.chaos --episodes 200 --worker-kills 2 --server-restarts 2
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from bench.common import console, machine_info, print_machine
from bench.drill import DrillConfig, run_drill


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = DrillConfig(data_dir=Path())
    parser = argparse.ArgumentParser(prog="bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=defaults.episodes)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=defaults.concurrency,
        help="episodes in flight at once",
    )
    parser.add_argument("--worker-kills", type=int, default=defaults.worker_kills)
    parser.add_argument("--server-restarts", type=int, default=defaults.server_restarts)
    parser.add_argument("--api-kills", type=int, default=defaults.api_kills)
    parser.add_argument(
        "--time-scale",
        type=float,
        default=defaults.time_scale,
        help="MISPERS_TIME_SCALE of the drill (policy durations divided by it)",
    )
    parser.add_argument(
        "--outage", type=float, default=defaults.outage, help="seconds a killed part stays down"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=defaults.settle,
        help="seconds to wait, after the last answer, for every episode to close",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the SQLite file, keys and logs go (default: a new temporary directory, "
        "removed after a passing run)",
    )
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.concurrency < 1:
        parser.error("--episodes and --concurrency must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    keep = args.data_dir is not None
    data_dir: Path = args.data_dir or Path(tempfile.mkdtemp(prefix="mispers-chaos-"))
    config = DrillConfig(
        data_dir=data_dir,
        episodes=args.episodes,
        concurrency=args.concurrency,
        worker_kills=args.worker_kills,
        server_restarts=args.server_restarts,
        api_kills=args.api_kills,
        time_scale=args.time_scale,
        outage=args.outage,
        settle=args.settle,
    )
    console.print("[bold]chaos drill[/bold]")
    print_machine(machine_info())
    console.print(f"data and logs: {data_dir}")
    report = asyncio.run(run_drill(config))
    for line in report.lines():
        console.print(line, highlight=False)
    failures = report.failures
    if failures:
        console.print(f"[bold red]FAILED[/bold red]: {'; '.join(failures)} (logs: {data_dir}/logs)")
        return 1
    console.print("[bold green]PASSED[/bold green]: 0 lost, 0 duplicated, 0 non-determinism")
    if not keep:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
