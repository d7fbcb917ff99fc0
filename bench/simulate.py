"""Policy simulation at national scale: a synthetic year's streams re-applied under two policies
(the shipped one and docs/examples/candidate-policy.toml) on every core, with a progress bar.

1. Streams: `--episodes` episodes (default 20,000, a shared machine; the national year is about
   200,000 episodes and 3 million events) over 365 days, made as `mispers synth` makes them (not
   timed as simulation).
2. Raw driver: the offline driver alone, one policy, one process, on a sample of the streams
   already parsed (`--raw-sample` episodes): events per second on one core.
3. Simulation: every stream parsed and driven under both policies, children dealt to
   `--processes` worker processes (default: every core), then the comparison's figures: events
   per second (stream events; each is applied twice, once per policy) overall and per core, and
   the ratio of the per-core rate to the raw driver's.

A run smaller than the national year (200,000 episodes) is labelled so, with the national year
extrapolated linearly by episodes: episodes are independent but for a child's record, and each
worker's cost is per event and per timer that fires. The national year itself is measured."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import time
from pathlib import Path
from typing import Any

from bench import year
from bench.common import Figure, console, progress
from bench.year import START
from mispers.offline.driver import ChildRecords, Recorded, run_episode
from mispers.policy import load_policy
from mispers.simulation import run as sim
from mispers.simulation.compare import compare

TARGET_S = 600.0
CANDIDATE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "candidate-policy.toml"


def streams(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    by_episode: dict[str, list[dict[str, Any]]] = {}
    for done in year.synthetic_year(args, "synthetic year (streams)", keep_events=True):
        for body in done.stream:
            by_episode.setdefault(str(body["subject"]), []).append(body)
    return by_episode


def raw_driver(groups: list[sim.Group], sample: int, until: dt.datetime) -> dict[str, float]:
    """The offline driver alone on one core: streams parsed beforehand, one policy."""
    policy = load_policy()
    chosen = random.Random(7).sample(groups, len(groups))
    parsed: list[list[tuple[str, list[Recorded]]]] = []
    count = 0
    for chosen_group in chosen:
        parsed.append([(eid, [sim.parse(b) for b in bodies]) for eid, bodies in chosen_group])
        count += len(chosen_group)
        if count >= sample:
            break
    events = sum(len(s) for g in parsed for _, s in g)
    records = ChildRecords()
    began, cpu = time.perf_counter(), time.process_time()
    for parsed_group in parsed:
        for episode_id, stream in parsed_group:
            run_episode(
                episode_id,
                stream,
                policy,
                until=until,
                records=records,
                alert_steps_in_timeline=False,  # as the simulation runs it
            )
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu
    return {
        "episodes": count,
        "events": events,
        "seconds": seconds,
        "events_per_s": events / seconds,
        "cpu_seconds": cpu_seconds,
        "events_per_cpu_s": events / cpu_seconds,
    }


def simulate(
    groups: list[sim.Group], processes: int, until: dt.datetime
) -> tuple[dict[str, float], dict[str, Any]]:
    base, cand = load_policy(), load_policy(CANDIDATE)
    episodes = sum(len(g) for g in groups)
    began = time.perf_counter()
    cpu = os.times()
    work = sim.jobs(groups, base, cand, until, {})
    with progress() as bar:
        task = bar.add_task("simulation, two policies", total=episodes)
        done = sim.run_and_merge(work, processes, lambda n: bar.advance(task, n))
    driven = time.perf_counter() - began
    result = compare(
        done.compared, START.date(), (until - dt.timedelta(days=1)).date(),
        {"baseline": "shipped", "candidate": CANDIDATE.name}, [], "synthetic year",
        (done.baseline, done.candidate),
    )  # fmt: skip
    seconds = time.perf_counter() - began
    after = os.times()
    events = sum(c.events for c in done.compared)
    # the workers' CPU (counted once the pool has been joined) and the parent's own
    cpu_seconds = sum(after[:4]) - sum(cpu[:4])
    return {
        "episodes": episodes,
        "events": events,
        "seconds": seconds,
        "driving_seconds": driven,
        "events_per_s": events / seconds,
        "events_per_s_per_core": events / seconds / processes,
        "cpu_seconds": cpu_seconds,
        "events_per_cpu_s": events / cpu_seconds,
    }, result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = year.parser("python -m bench.simulate", __doc__, 20_000)
    parser.add_argument("--raw-sample", type=int, default=2_000, help="episodes, one core")
    return year.parse(parser, argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    processes = args.processes or os.cpu_count() or 1
    info = year.start(args)
    began = time.perf_counter()
    by_episode = streams(args)
    made = time.perf_counter() - began
    groups = sim.group_by_child(by_episode)
    until = START + dt.timedelta(days=365)
    raw = raw_driver(groups, args.raw_sample, until)
    sim_run, result = simulate(groups, processes, until)
    ratio = sim_run["events_per_s_per_core"] / raw["events_per_s"]
    cpu_ratio = sim_run["events_per_cpu_s"] / raw["events_per_cpu_s"]
    # A smaller run is scaled by episodes (the synthetic year's own events per episode, not a
    # round 3 million); the national year itself is its measured time.
    scale = year.NATIONAL_EPISODES / args.episodes
    national_s = sim_run["seconds"] * scale
    # on a machine whose cores are this run's alone: the CPU the episodes need, over the cores
    national_idle_s = sim_run["cpu_seconds"] * scale / processes
    scaled = args.episodes < year.NATIONAL_EPISODES
    label = f" (extrapolated from {args.episodes:,} episodes)" if scaled else " (measured)"
    figs = [
        Figure("streams made (synthetic year, not simulation)", made, "s",
               note=f"{args.episodes:,} episodes, {sim_run['events']:,} events"),
        Figure("raw offline driver, one policy, one core", raw["events_per_s"], "events/s",
               note=f"{raw['episodes']:,} episodes, {raw['events']:,} events parsed beforehand"),
        Figure(f"simulation, two policies, {processes} processes", sim_run["events_per_s"],
               "events/s", note=f"{sim_run['seconds']:.0f} s wall, parsing and figures included"),
        Figure("simulation per core", sim_run["events_per_s_per_core"], "events/s"),
        Figure("ratio: simulation per core / raw driver", ratio, "",
               note="each event is applied twice (two policies), and parsed"),
        Figure("raw driver per CPU second", raw["events_per_cpu_s"], "events/s",
               note=f"{raw['cpu_seconds']:.0f} CPU s"),
        Figure("simulation per CPU second", sim_run["events_per_cpu_s"], "events/s",
               note=f"{sim_run['cpu_seconds']:.0f} CPU s, workers and parent"),
        Figure("ratio per CPU second", cpu_ratio, ""),
        Figure(f"national year{label}, wall", national_s, "s",
               target="<= 600 s", ok=national_s <= TARGET_S,
               note=f"load average {os.getloadavg()[0]:.1f} at the end"),
        Figure(f"national year{label}, cores to itself", national_idle_s, "s",
               target="<= 600 s", ok=national_idle_s <= TARGET_S,
               note="CPU seconds needed / cores"),
    ]  # fmt: skip
    console.print(
        f"alerts {result['baseline']['alerts_total']:,} -> {result['candidate']['alerts_total']:,}"
        f"; overdue {result['baseline']['overdue_total']:,} -> "
        f"{result['candidate']['overdue_total']:,}"
    )
    payload = {
        "raw": raw,
        "simulation": sim_run,
        "national_seconds": national_s,
        "national_seconds_cores_to_itself": national_idle_s,
    }
    return year.finish("simulate", "Policy simulation at scale", args, info, figs, payload)


if __name__ == "__main__":
    main()
