"""Ingest efficiency: throughput against the raw ceiling, the payload codec's overhead, latencies.

One embedded dev server, started with the flags of `make run`, serves every phase of one run:

(a) raw ceiling: a trivial workflow (bench.rawworker, its own worker process) started with
    signal-with-start and sent the rest of its events as signals straight from the Temporal
    client; an episode's events are done when its workflow has counted them all (its result);
(b) Mispers end to end: the same number of episodes and events posted as CloudEvents to the
    real API (worker and API as subprocesses, payload codec on, as shipped) until each episode's
    state (GET /v1/episodes/{id}) holds every event; ratio b/a, target >= 0.8;
(d) the same as (b) against a second worker + API with the codec switched off (bench.plain);
(e) with `--export-cost`: the same as (b) against a third worker + API whose close-time export
    writes nothing (MISPERS_ANALYTICS_EXPORT=off), every episode closed at its end in (b) and
    (e) alike: without closures nothing is exported and the two would not differ;
(c) event-to-visible latency at a fixed offered load (open loop, paced by schedule; latency is
    measured from the scheduled send time, so a stall is not hidden), with the latency of each
    POST /v1/events and GET /v1/episodes/{id} call.

Clients keep `--concurrency` episodes in flight; an episode's events are sent in order. The
episodes stay open unless `--close` (implied by `--export-cost`) closes each once its events are
visible: every open obligation waived by a supervisor, counted as one more event."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.progress import Progress, TaskID
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from bench.common import (
    Figure,
    Service,
    Stack,
    bench_parser,
    close_via_api,
    console,
    cpu_seconds,
    machine_info,
    median,
    percentile,
    print_figures,
    print_machine,
    progress,
    stack,
    stream_event,
    write_results,
)
from bench.rawworker import SIGNAL
from testkit.waiting import eventually

RAW_QUEUE = "bench-raw"
VISIBLE_WITHIN = 60.0


@dataclass
class Phase:
    name: str
    events: int
    seconds: float
    post_latencies: list[float] = field(default_factory=list)
    get_latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds


async def _bounded(jobs: list[Any], concurrency: int) -> None:
    slots = asyncio.Semaphore(concurrency)

    async def one(job: Any) -> None:
        async with slots:
            await job

    await asyncio.gather(*(one(j) for j in jobs))


async def raw_phase(
    client: Client,
    prefix: str,
    episodes: int,
    per_episode: int,
    concurrency: int,
    bar: Progress,
    task: TaskID,
    updates: bool = False,
) -> Phase:
    """The engine's ceiling: each event a signal the server stores (signal-with-start for the
    first), or with `updates` an Update the worker answers (update-with-start for the first),
    which is what Mispers' contract asks of every event."""

    async def chain(i: int) -> None:
        episode_id = f"{prefix}-{i}"
        workflow_id = f"raw{'u' if updates else ''}-{episode_id}"
        bodies = [stream_event(episode_id, j, f"C-{episode_id}") for j in range(per_episode)]
        if updates:
            start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
                "BenchTrivial",
                per_episode,
                id=workflow_id,
                task_queue=RAW_QUEUE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
            await client.execute_update_with_start_workflow(
                SIGNAL, bodies[0], start_workflow_operation=start
            )
        else:
            await client.start_workflow(
                "BenchTrivial",
                per_episode,
                id=workflow_id,
                task_queue=RAW_QUEUE,
                start_signal=SIGNAL,
                start_signal_args=[bodies[0]],
            )
        bar.advance(task)
        handle = client.get_workflow_handle(workflow_id)
        for body in bodies[1:]:
            if updates:
                await handle.execute_update(SIGNAL, body)
            else:
                await handle.signal(SIGNAL, body)
            bar.advance(task)
        counted = await handle.result()
        if counted != per_episode:
            raise RuntimeError(f"raw workflow counted {counted} of {per_episode}")

    started = time.perf_counter()
    await _bounded([chain(i) for i in range(episodes)], concurrency)
    return Phase(
        "raw-update" if updates else "raw", episodes * per_episode, time.perf_counter() - started
    )


async def _post(http: httpx.AsyncClient, body: dict[str, Any], phase: Phase) -> None:
    sent = time.perf_counter()
    answer = await http.post(
        "/v1/events", json=body, headers={"content-type": "application/cloudevents+json"}
    )
    phase.post_latencies.append(time.perf_counter() - sent)
    if answer.status_code != 202 or answer.json().get("status") != "accepted":
        raise RuntimeError(f"event {body['type']} answered {answer.status_code}: {answer.text}")


async def _visible(
    http: httpx.AsyncClient, episode_id: str, event_ids: set[str], phase: Phase
) -> None:
    async def read() -> set[str]:
        sent = time.perf_counter()
        answer = await http.get(f"/v1/episodes/{episode_id}")
        phase.get_latencies.append(time.perf_counter() - sent)
        if answer.status_code != 200:
            return set()
        return {entry["event_id"] for entry in answer.json()["timeline"]}

    await eventually(read, lambda seen: event_ids <= seen, VISIBLE_WITHIN, what="events visible")


def api_client(service: Service, concurrency: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=service.url,
        headers={"authorization": f"Bearer {service.token}"},
        timeout=60.0,
        limits=httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency),
    )


async def mispers_phase(
    service: Service,
    prefix: str,
    episodes: int,
    per_episode: int,
    concurrency: int,
    bar: Progress,
    task: TaskID,
    close: bool = False,
) -> Phase:
    phase = Phase(f"mispers-{service.name}", episodes * (per_episode + close), 0.0)
    async with api_client(service, concurrency) as http:

        async def chain(i: int) -> None:
            episode_id = f"{prefix}-{i}"
            ids: set[str] = set()
            for j in range(per_episode):
                body = stream_event(episode_id, j, f"C-{episode_id}")
                await _post(http, body, phase)
                ids.add(body["id"])
                bar.advance(task)
            await _visible(http, episode_id, ids, phase)
            if close:
                await close_via_api(http, episode_id, service.closer_token)
                bar.advance(task)

        started = time.perf_counter()
        await _bounded([chain(i) for i in range(episodes)], concurrency)
        phase.seconds = time.perf_counter() - started
    return phase


class CpuMeter:
    """CPU used by each process between successive `split()` calls, as a share of one core."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.at = time.perf_counter()
        self.used = {name: cpu_seconds(pid) for name, pid in pids.items()}

    def split(self) -> dict[str, float]:
        now = time.perf_counter()
        used = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        wall = max(now - self.at, 1e-9)
        share = {name: (used[name] - self.used[name]) / wall for name in self.pids}
        self.at, self.used = now, used
        return share


@dataclass
class Latency:
    offered_rate: float
    achieved_rate: float
    to_visible: list[float]
    post: list[float]
    get: list[float]


async def latency_phase(
    service: Service,
    prefix: str,
    rate: float,
    seconds: float,
    per_episode: int,
    bar: Progress,
    task: TaskID,
) -> Latency:
    """Open loop: event j is due at t0 + j/rate, on chain j mod `chains`; a chain sends each of
    its events at its due time (or as soon as its previous event is visible, if later)."""
    total = max(1, int(rate * seconds))
    chains = max(1, min(total, int(rate)))
    phase = Phase("latency", total, seconds)
    to_visible: list[float] = []
    async with api_client(service, chains) as http:
        t0 = time.perf_counter() + 0.5

        async def chain(c: int) -> None:
            episodes = itertools.count()
            episode_id, child, index = "", "", per_episode
            for j in range(c, total, chains):
                if index >= per_episode:
                    episode_id = f"{prefix}-{c}-{next(episodes)}"
                    child, index = f"C-{episode_id}", 0
                due = t0 + j / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing the offered load, not waiting on work
                body = stream_event(episode_id, index, child)
                index += 1
                await _post(http, body, phase)
                await _visible(http, episode_id, {body["id"]}, phase)
                to_visible.append(time.perf_counter() - due)
                bar.advance(task)

        await asyncio.gather(*(chain(c) for c in range(chains)))
        elapsed = time.perf_counter() - t0
    return Latency(rate, total / elapsed, to_visible, phase.post_latencies, phase.get_latencies)


async def warm_up(client: Client, services: list[Service], close: bool) -> None:
    """One episode per path first; closed when the phases close theirs, so the first
    close-time export (the store's opening) is not charged to whichever phase runs first."""
    per = 6 if close else 2
    bar = progress()
    with bar:
        task = bar.add_task("warm-up", total=2 + len(services) * (per + close))
        await raw_phase(client, "warm", 1, 2, 1, bar, task)
        for service in services:
            await mispers_phase(service, f"warm-{service.name}", 1, per, 1, bar, task, close)


async def run_bench(st: Stack, args: argparse.Namespace) -> dict[str, Any]:
    codec = st.add_service("codec", codec=True)
    plain = st.add_service("plain", codec=False)
    no_export = (
        st.add_service("no-export", codec=True, extra_env={"MISPERS_ANALYTICS_EXPORT": "off"})
        if args.export_cost
        else None
    )
    raw_pid = st.spawn(
        "raw-worker", [sys.executable, "-m", "bench.rawworker", st.address, RAW_QUEUE]
    )
    pids = {
        "server": st.server_pid,
        "raw-worker": raw_pid,
        "worker": codec.worker_pid,
        "api": codec.api_pid,
        "worker-no-codec": plain.worker_pid,
        "api-no-codec": plain.api_pid,
        "bench": os.getpid(),
    }
    if no_export is not None:
        pids |= {"worker-no-export": no_export.worker_pid, "api-no-export": no_export.api_pid}
    client = await Client.connect(st.address)
    n_ep, per, conc = args.episodes, args.events_per_episode, args.concurrency
    close = args.close or args.export_cost
    await warm_up(client, [codec, plain] + ([no_export] if no_export else []), close)
    total = n_ep * (per + close)
    runs: list[dict[str, Any]] = []
    cpu_seen: list[dict[str, dict[str, float]]] = []
    for run in range(args.runs):
        bar = progress()
        with bar:
            t_raw = bar.add_task(f"run {run + 1}: (a) raw signals", total=n_ep * per)
            t_rawu = bar.add_task(f"run {run + 1}: (a') raw Updates", total=n_ep * per)
            t_codec = bar.add_task(f"run {run + 1}: (b) Mispers, codec", total=total)
            t_plain = bar.add_task(f"run {run + 1}: (d) Mispers, no codec", total=total)
            t_off = (
                bar.add_task(f"run {run + 1}: (e) Mispers, export off", total=total)
                if no_export
                else None
            )
            t_lat = bar.add_task(
                f"run {run + 1}: (c) {args.rate:g} ev/s",
                total=max(1, int(args.rate * args.load_seconds)),
            )
            cpu = CpuMeter(pids)
            raw = await raw_phase(client, f"r{run}", n_ep, per, conc, bar, t_raw)
            cpu_share = {"raw": cpu.split()}
            raw_update = await raw_phase(
                client, f"u{run}", n_ep, per, conc, bar, t_rawu, updates=True
            )
            cpu_share["raw-update"] = cpu.split()
            # Alternate the order of the codec and no-codec phases between runs.
            order = [(codec, t_codec), (plain, t_plain)]
            if no_export is not None and t_off is not None:
                order.append((no_export, t_off))
            if run % 2:
                order.reverse()
            phases: dict[str, Phase] = {}
            for service, task in order:
                phases[service.name] = await mispers_phase(
                    service, f"{service.name[0]}{run}", n_ep, per, conc, bar, task, close
                )
                cpu_share[service.name] = cpu.split()
            lat = await latency_phase(
                codec, f"l{run}", args.rate, args.load_seconds, per, bar, t_lat
            )
            cpu_share["latency"] = cpu.split()
        result = {
            "raw_events_per_s": raw.rate,
            "mispers_events_per_s": phases["codec"].rate,
            "mispers_no_codec_events_per_s": phases["plain"].rate,
            "ratio_b_over_a": phases["codec"].rate / raw.rate,
            "raw_update_events_per_s": raw_update.rate,
            "ratio_b_over_a_update": phases["codec"].rate / raw_update.rate,
            "latency_offered_per_s": lat.offered_rate,
            "latency_achieved_per_s": lat.achieved_rate,
            "to_visible_p50": percentile(lat.to_visible, 50),
            "to_visible_p95": percentile(lat.to_visible, 95),
            "to_visible_p99": percentile(lat.to_visible, 99),
            "post_p50": percentile(lat.post, 50),
            "post_p95": percentile(lat.post, 95),
            "get_p50": percentile(lat.get, 50),
            "get_p95": percentile(lat.get, 95),
            "saturated_post_p50": percentile(phases["codec"].post_latencies, 50),
            "saturated_post_p95": percentile(phases["codec"].post_latencies, 95),
        }
        if "no-export" in phases:
            off = phases["no-export"].rate
            result["mispers_export_off_events_per_s"] = off
            result["export_on_over_off"] = phases["codec"].rate / off
        runs.append(result)
        cpu_seen.append(cpu_share)
        console.print(
            f"run {run + 1}: raw {raw.rate:.1f} ev/s, Mispers {phases['codec'].rate:.1f} ev/s "
            f"(b/a {result['ratio_b_over_a']:.2f}), no codec {phases['plain'].rate:.1f} ev/s; "
            f"to-visible p50/p95/p99 {result['to_visible_p50'] * 1000:.0f}/"
            f"{result['to_visible_p95'] * 1000:.0f}/{result['to_visible_p99'] * 1000:.0f} ms"
        )
    for phase_name, shares in cpu_seen[-1].items():
        busy = ", ".join(f"{k} {v:.0%}" for k, v in shares.items() if v >= 0.02)
        console.print(f"last run, CPU per process during {phase_name} (of one core): {busy}")
    return {
        "runs": runs,
        "cpu_share_per_phase": cpu_seen,
        "median": {k: median([r[k] for r in runs]) for k in runs[0]},
    }


def figures(med: dict[str, float], args: argparse.Namespace) -> list[Figure]:
    overhead = 1 - med["mispers_events_per_s"] / med["mispers_no_codec_events_per_s"]
    ms = 1000.0
    return [
        Figure("(a) raw ceiling: signal-with-start + signals", med["raw_events_per_s"], "events/s"),
        Figure("(b) Mispers end to end (API, codec on)", med["mispers_events_per_s"], "events/s"),
        Figure("ratio b/a", med["ratio_b_over_a"], "", "≥ 0.8", med["ratio_b_over_a"] >= 0.8),
        Figure(
            "(a') raw ceiling with Updates (the contract's synchronous answer)",
            med["raw_update_events_per_s"],
            "events/s",
        ),
        Figure("ratio b/a' (Mispers over the Update ceiling)", med["ratio_b_over_a_update"], ""),
        Figure(
            "(d) Mispers end to end, codec off", med["mispers_no_codec_events_per_s"], "events/s"
        ),
        Figure("(d) codec overhead (1 - on/off)", overhead * 100, "%"),
        *export_figures(med),
        Figure(f"(c) event-to-visible p50 at {args.rate:g} ev/s", med["to_visible_p50"] * ms, "ms"),
        Figure(f"(c) event-to-visible p95 at {args.rate:g} ev/s", med["to_visible_p95"] * ms, "ms"),
        Figure(f"(c) event-to-visible p99 at {args.rate:g} ev/s", med["to_visible_p99"] * ms, "ms"),
        Figure(
            "(c) achieved load",
            med["latency_achieved_per_s"],
            "events/s",
            note=f"offered {args.rate:g}",
        ),
        Figure(f"POST /v1/events p50 at {args.rate:g} ev/s", med["post_p50"] * ms, "ms"),
        Figure(f"POST /v1/events p95 at {args.rate:g} ev/s", med["post_p95"] * ms, "ms"),
        Figure(f"GET /v1/episodes/{{id}} p50 at {args.rate:g} ev/s", med["get_p50"] * ms, "ms"),
        Figure(f"GET /v1/episodes/{{id}} p95 at {args.rate:g} ev/s", med["get_p95"] * ms, "ms"),
    ]


def export_figures(med: dict[str, float]) -> list[Figure]:
    if "export_on_over_off" not in med:
        return []
    return [
        Figure("(e) Mispers end to end, export off", med["mispers_export_off_events_per_s"],
               "events/s", note="every episode closed, as in (b)"),
        Figure("(e) close-time export: (b) / (e)", med["export_on_over_off"], "",
               note="1.0: the export costs nothing measurable"),
    ]  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = bench_parser("python -m bench.ingest", __doc__)
    parser.add_argument("--episodes", type=int, default=100, help="episodes per phase")
    parser.add_argument(
        "--events-per-episode", type=int, default=8, help="events per episode, the report included"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="episodes in flight")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are reported")
    parser.add_argument("--rate", type=float, default=20.0, help="offered load for (c), ev/s")
    parser.add_argument("--load-seconds", type=float, default=20.0, help="duration of (c)")
    parser.add_argument("--close", action="store_true", help="close every episode at its end")
    parser.add_argument(
        "--export-cost", action="store_true", help="(e): closing episodes, export on vs off"
    )
    args = parser.parse_args(argv)
    if (args.close or args.export_cost) and args.events_per_episode < 6:
        parser.error("--close and --export-cost need 6 events per episode: the child is found")
    if args.events_per_episode < 1 or args.episodes < 1 or args.runs < 1:
        parser.error("--episodes, --events-per-episode and --runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    info = machine_info()
    print_machine(info)
    console.print(
        f"ingest: {args.episodes} episodes x {args.events_per_episode} events per phase, "
        f"{args.concurrency} in flight, {args.runs} run(s); latency at {args.rate:g} ev/s for "
        f"{args.load_seconds:g} s"
    )
    with stack() as st:
        outcome = asyncio.run(run_bench(st, args))
    figs = figures(outcome["median"], args)
    print_figures(f"Ingest: medians over {args.runs} run(s)", figs)
    payload = {
        "machine": info,
        "args": vars(args),
        **outcome,
        "figures": [f.__dict__ for f in figs],
    }
    if not args.no_json:
        write_results("ingest", payload)
    return payload


if __name__ == "__main__":
    main()
