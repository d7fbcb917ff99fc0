"""What the year-scale benches (bench/report.py, bench/simulate.py) share: their common flags,
the synthetic year made on every core behind a progress bar, and the summary (table captioned
with the date and the commit, results file)."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Iterator
from typing import Any

from bench.common import (
    Figure,
    bench_parser,
    machine_info,
    print_figures,
    print_machine,
    progress,
    write_results,
)
from mispers.analytics.bulk import Done, Job, jobs, run_all

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAYS = 365
# England and Wales report about 199,000 child missing incidents a year (NCA 2019/20).
NATIONAL_EPISODES = 200_000


def parser(prog: str, doc: str | None, episodes: int) -> argparse.ArgumentParser:
    out = bench_parser(prog, doc)
    out.add_argument("--episodes", type=int, default=episodes)
    out.add_argument("--seed", type=int, default=1)
    out.add_argument("--processes", type=int, default=None, help="default: every core")
    return out


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be at least 1")
    if args.processes is not None and args.processes < 1:
        parser.error("--processes must be at least 1")
    return args


def synthetic_year(
    args: argparse.Namespace,
    description: str,
    *,
    data_dir: str | None = None,
    analytics: str | None = None,
    keep_events: bool = False,
) -> Iterator[Done]:
    """The year's episodes through the offline driver on `--processes` workers, each worker's
    share as it finishes, behind a bar with the rate and the time left."""
    template = Job(
        children=[], seed=args.seed, days=DAYS, start=START, policy_path=None, register={},
        data_dir=data_dir, analytics=analytics, keep_events=keep_events,
    )  # fmt: skip
    work = jobs(template, args.episodes)
    with progress() as bar:
        task = bar.add_task(description, total=args.episodes)
        yield from run_all(work, args.processes, lambda d: bar.advance(task, d.episodes))


def start(args: argparse.Namespace) -> dict[str, Any]:
    info = machine_info()
    print_machine(info)
    return info


def finish(
    name: str,
    title: str,
    args: argparse.Namespace,
    info: dict[str, Any],
    figures: list[Figure],
    payload: dict[str, Any],
) -> dict[str, Any]:
    """The summary table, then the results file (`bench/results/<name>-<stamp>.json`)."""
    print_figures(title, figures, info)
    out = {
        "machine": info,
        "args": {k: str(v) for k, v in vars(args).items()},
        **payload,
        "figures": [f.__dict__ for f in figures],
    }
    if not args.no_json:
        write_results(name, out)
    return out
