"""What a wake that misses the worker's cache pays before it can run: replaying the episode's
history. At 10,000 open episodes and a cache of 800, most timer wakes find their episode gone
from the cache and replay its whole history first, so this cost is in the alert lateness.

Each recorded history of the corpus (tests/histories, the same the replay test uses) is replayed
`--rounds` times in this process with the worker's workflows, data converter and runner; the
median time of each is reported, with the totals over the episode histories and the time per
history event. No server is needed."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from bench.common import (
    REPO,
    Figure,
    bench_parser,
    console,
    machine_info,
    median,
    print_figures,
    print_machine,
    progress,
    results_payload,
)
from mispers.engine.client import data_converter
from worker import workflow_runner
from workflows.child_record import ChildRecord
from workflows.episode import MissingChildEpisode

CORPUS = REPO / "tests" / "histories"


def load_corpus(directory: Path) -> list[tuple[str, WorkflowHistory, int]]:
    """(name, history, events) of every recorded history, episode histories first."""
    found = []
    for path in sorted(directory.glob("*.json")):
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        found.append((path.stem, history, len(history.events)))
    return sorted(found, key=lambda item: (not item[0].startswith("episode"), item[0]))


async def replay_times(
    corpus: list[tuple[str, WorkflowHistory, int]], rounds: int
) -> dict[str, list[float]]:
    replayer = Replayer(
        workflows=[MissingChildEpisode, ChildRecord],
        data_converter=data_converter(),
        workflow_runner=workflow_runner(),
    )
    times: dict[str, list[float]] = {name: [] for name, _, _ in corpus}
    bar = progress()
    with bar:
        task = bar.add_task("replays", total=rounds * len(corpus))
        for _ in range(rounds):
            for name, history, _ in corpus:
                began = time.perf_counter()
                result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
                took = time.perf_counter() - began
                if result.replay_failure is not None:
                    raise SystemExit(f"{name} does not replay: {result.replay_failure}")
                times[name].append(took)
                bar.advance(task)
    return times


def figures(
    corpus: list[tuple[str, WorkflowHistory, int]], times: dict[str, list[float]]
) -> list[Figure]:
    episodes = [(name, events) for name, _, events in corpus if name.startswith("episode")]
    total_ms = sum(median(times[name]) for name, _ in episodes) * 1000
    events = sum(n for _, n in episodes)
    longest = max(episodes, key=lambda item: item[1])
    return [
        Figure(
            f"replay of the {len(episodes)} recorded episode histories, in all",
            total_ms,
            "ms",
            note=f"{events} history events",
        ),
        Figure("  per history event", total_ms * 1000 / events, "µs"),
        Figure(
            f"  the longest ({longest[0]}, {longest[1]} events)",
            median(times[longest[0]]) * 1000,
            "ms",
        ),
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = bench_parser("python -m bench.replay", __doc__)
    parser.add_argument("--rounds", type=int, default=5, help="replays of each; medians reported")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    info = machine_info()
    print_machine(info)
    corpus = load_corpus(CORPUS)
    times = asyncio.run(replay_times(corpus, args.rounds))
    for name, _, events in corpus:
        console.print(f"{name}: {events} events, {median(times[name]) * 1000:.1f} ms")
    figs = figures(corpus, times)
    print_figures(f"Replay of recorded histories: medians of {args.rounds} round(s)", figs, info)
    histories = {name: {"events": events, "seconds": times[name]} for name, _, events in corpus}
    return results_payload("replay", info, args, figs, {"histories": histories})


if __name__ == "__main__":
    main()
