"""Alert timeliness, memory and supervisor reads at scale.

One embedded dev server (flags of `make run`), one Mispers worker and API, all at a drill time
scale (MISPERS_TIME_SCALE) so that deadlines fall inside the run, with a webhook receiver in
this process that records the first arrival of each alert_id and counts repeats.

1. Ramp: `--episodes` episodes (default 10,000; every `--high-every`-th at high risk, the rest
   medium) are reported through POST /v1/events at `--ramp-rate` reports/s and stay open, each
   with its obligations. The ramp rate is the alert rate: each obligation's deadlines fall as a
   wave at the rate the reports came in. A 503 is sent again with back-off.
2. At N open: RSS of the worker, the server and the API; `--reads` sequential calls each of
   GET /v1/episodes?risk=high&overdue=true and GET /v1/episodes/{id} (a random open episode);
   the same reads again in the middle of the wave of first deadlines, while alerts fire.
   Beside each accepted report, the raw peer (bench.rawworker, its own worker process with the
   same workflow cache) starts a trivial workflow that sleeps until each alert the episode owes
   and posts its id to a second receiver: the same waves, at the same times, on the same server
   and machine, so each lateness figure has a peer measured in the same run.
3. Observe: until every episode's first medium deadline (1 h / scale after its report) and
   `--observe` more seconds have passed; deadlines keep falling while the ramp runs too.
4. Check: the alerts each episode owes by the end of the observation are derived from its
   report by the rules themselves (mispers.domain, stepped wake by wake as the workflow steps),
   not read back from 10,000 workflows; a random `--sample` of episodes is read by query to
   prove the derivation agrees with what the workflows raised. Every owed alert must reach the
   webhook (waited for up to `--grace` seconds); lateness = first arrival at the webhook - the
   alert's scheduled time (its obligation's due time for level 1, the escalation time after);
   the peer's lateness likewise, and the ratio of the two p99s (target <= 2).
Three runs by default, medians reported (a 10,000-episode run takes about 40 minutes)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.service import RPCError

from bench.common import (
    REPO,
    AlertReceiver,
    Figure,
    Service,
    Stack,
    bench_parser,
    console,
    cpu_seconds,
    machine_info,
    median,
    parse_time,
    percentile,
    print_figures,
    print_machine,
    progress,
    report,
    results_path,
    rss_mib,
    stack,
    write_results,
)
from bench.rawworker import WAVES
from mispers.api.validation import EVENT_ADAPTER
from mispers.config import DEFAULT_WORKER_CACHE
from mispers.domain.state import Alert, EpisodeState
from mispers.engine.client import connect, query_episode_state
from mispers.offline import owed_alerts as offline_owed_alerts
from mispers.policy import PinnedPolicy, Policy, load_policy
from testkit.waiting import eventually

# A 503 says "sending again is safe": the ramp sends again with back-off, as a real source
# would, for up to this long before it gives the run up.
REPORT_DEADLINE_S = 600.0
FIRST_MEDIUM_DEADLINE_S = 3600.0  # systems_checks at medium risk (the shipped policy)
RAW_QUEUE = "bench-raw-waves"


@dataclass
class Peer:
    """The raw peer: a plain client (no codec) starting one trivial workflow per episode."""

    client: Client
    url: str
    policy: Policy
    horizon_s: float  # alerts due up to this long after a report are scheduled
    due: dict[str, float] = field(default_factory=dict)

    async def start(self, episode_id: str, body: dict[str, Any]) -> None:
        reported = _event(body)
        until = reported.time + dt.timedelta(seconds=self.horizon_s)
        owed = offline_owed_alerts({episode_id: reported}, self.policy, until)
        due = {f"raw:{k}": a.scheduled_at.timestamp() for k, a in owed.items()}
        self.due.update(due)
        alerts = [[k, at] for k, at in due.items()]
        await self.client.start_workflow(
            WAVES,
            {"url": self.url, "alerts": alerts},
            id=f"raw-{episode_id}",
            task_queue=RAW_QUEUE,
        )


async def ramp(
    service: Service,
    ids: list[str],
    args: argparse.Namespace,
    accepted: dict[str, Any],
    peer: Peer | None = None,
) -> tuple[float, float, list[float], int]:
    """Report every episode, report i no earlier than i / `--ramp-rate` s after the start (so
    the deadlines, and the alerts, fall at that rate); `accepted` gets each accepted report's
    body (the check derives what each episode owes from it)."""
    high_every, concurrency, rate = args.high_every, args.concurrency, args.ramp_rate
    limit = args.ramp_limit
    posts: list[float] = []
    retried: list[str] = []
    slots = asyncio.Semaphore(concurrency)
    bar = progress()
    async with httpx.AsyncClient(
        base_url=service.url,
        headers={"authorization": f"Bearer {service.token}"},
        timeout=120.0,
        limits=httpx.Limits(max_connections=concurrency + 4),
    ) as http:
        with bar:
            task = bar.add_task(f"reporting {len(ids)} episodes", total=len(ids))
            started = time.time()

            async def one(i: int, episode_id: str) -> None:
                risk = "high" if high_every and i % high_every == 0 else "medium"
                if rate:  # a pacing clock, not a wait for work
                    await asyncio.sleep(max(0.0, started + i / rate - time.time()))
                async with slots:
                    if limit and time.time() > started + limit:
                        bar.advance(task)  # past --ramp-limit: left unreported
                        return
                    # Stamped when sent, as a real source would: stamped before the queue, every
                    # report would share one `time` and every deadline would fall at one instant.
                    body = report(episode_id, f"C-{episode_id}", risk)
                    give_up = time.monotonic() + REPORT_DEADLINE_S
                    backoff = 0.5
                    while True:
                        sent = time.perf_counter()
                        answer = await http.post(
                            "/v1/events",
                            json=body,
                            headers={"content-type": "application/cloudevents+json"},
                        )
                        posts.append(time.perf_counter() - sent)
                        if answer.status_code != 503 or time.monotonic() > give_up:
                            break
                        retried.append(episode_id)
                        await asyncio.sleep(backoff)  # back-off before sending again
                        backoff = min(backoff * 2, 10.0)
                if answer.status_code != 202:
                    raise RuntimeError(f"report answered {answer.status_code}: {answer.text}")
                accepted[episode_id] = body
                if peer is not None:
                    await peer.start(episode_id, body)
                bar.advance(task)

            await asyncio.gather(*(one(i, e) for i, e in enumerate(ids)))
    if retried:
        console.print(f"[yellow]{len(retried)} reports answered 503 and were sent again[/]")
    return started, time.time(), posts, len(retried)


async def supervisor_reads(
    service: Service, ids: list[str], reads: int, client: Client | None = None
) -> dict[str, Any]:
    """The API's reads; with `client`, each detail read's episode is also asked by the
    workflow's `state` query (what a detail read cost before the state memo: a worker, and a
    replay when the episode is not in its cache), as its peer in the same run."""
    listing: list[float] = []
    single: list[float] = []
    by_query: list[float] = []
    found_high_overdue = 0
    failed = 0
    rng = random.Random(5)
    bar = progress()
    async with httpx.AsyncClient(
        base_url=service.url, headers={"authorization": f"Bearer {service.token}"}, timeout=60.0
    ) as http:
        with bar:
            task = bar.add_task("supervisor reads", total=2 * reads)
            for _ in range(reads):
                sent = time.perf_counter()
                answer = await http.get("/v1/episodes", params={"risk": "high", "overdue": "true"})
                listing.append(time.perf_counter() - sent)
                if answer.status_code == 200:
                    found_high_overdue = len(answer.json()["episodes"])
                else:
                    failed += 1
                bar.advance(task)
                chosen = rng.choice(ids)
                sent = time.perf_counter()
                answer = await http.get(f"/v1/episodes/{chosen}")
                single.append(time.perf_counter() - sent)
                failed += answer.status_code != 200
                if client is not None:
                    sent = time.perf_counter()
                    failed += await query_episode_state(client, chosen) is None
                    by_query.append(time.perf_counter() - sent)
                bar.advance(task)
    return {
        "list_high_overdue_p50": percentile(listing, 50),
        "list_high_overdue_p95": percentile(listing, 95),
        "list_high_overdue_page_len": found_high_overdue,
        "get_episode_p50": percentile(single, 50),
        "get_episode_p95": percentile(single, 95),
        **(
            {
                "query_state_p50": percentile(by_query, 50),
                "query_state_p95": percentile(by_query, 95),
            }
            if client is not None
            else {}
        ),
        "reads_failed": failed,
    }


def memory(st: Stack, service: Service) -> dict[str, float]:
    return {f"{name}_rss_mib": rss_mib(pid) for name, pid in st.pids(service).items()}


@dataclass
class Timeline:
    """Samples every `every` s of the whole run (ramp included): how many episodes are open,
    alerts delivered, each process's RSS and CPU seconds, so a long run shows what grows with
    what, where its peak fell and which process ran out of core first, not only the figures
    at the end."""

    st: Stack
    service: Service
    receiver: AlertReceiver
    opened: dict[str, Any]
    every: float = 5.0
    path: Path | None = None  # each sample is also appended here, so a run cut short keeps it
    samples: list[dict[str, float]] = field(default_factory=list)

    async def run(self) -> None:
        start = time.time()
        while True:
            self.samples.append(
                {
                    "t": round(time.time() - start, 1),
                    "open": len(self.opened),
                    "delivered": len(self.receiver.snapshot()),
                    **memory(self.st, self.service),
                    "worker_cpu_s": cpu_seconds(self.service.worker_pid),
                    "server_cpu_s": cpu_seconds(self.st.server_pid),
                    "api_cpu_s": cpu_seconds(self.service.api_pid),
                }
            )
            if self.path is not None:
                with self.path.open("a") as out:  # one short line every 5 s
                    out.write(json.dumps(self.samples[-1]) + "\n")
            await asyncio.sleep(self.every)  # a sampling clock, not a wait for work

    def peaks(self) -> dict[str, float]:
        keys = ("worker_rss_mib", "server_rss_mib", "api_rss_mib")
        return {f"peak_{k}_whole_run": max(x[k] for x in self.samples) for k in keys}

    def at_open(self, step: int) -> dict[str, dict[str, float]]:
        """The first sample at or past each multiple of `step` open episodes."""
        found: dict[str, dict[str, float]] = {}
        for sample in self.samples:
            reached = int(sample["open"]) // step * step
            if reached and str(reached) not in found:
                found[str(reached)] = sample
        return found


def timeline_path(args: argparse.Namespace) -> Path | None:
    if args.no_json:
        return None
    path = results_path("alerts-timeline", "ndjson")
    console.print(f"timeline (every 5 s) appended to {path.relative_to(REPO)}")
    return path


async def observe_until(
    st: Stack, service: Service, receiver: AlertReceiver, until: float
) -> dict[str, float]:
    peak = memory(st, service)
    bar = progress()
    with bar:
        task = bar.add_task("observing alerts (s)", total=max(1.0, until - time.time()))
        start = time.time()
        while time.time() < until:
            await asyncio.sleep(min(1.0, max(0.0, until - time.time())))  # a clock, not a wait
            for key, value in memory(st, service).items():
                peak[key] = max(peak[key], value)
            bar.update(
                task,
                completed=time.time() - start,
                description=f"observing alerts: {len(receiver.snapshot())} delivered",
            )
    return {f"peak_{k}": v for k, v in peak.items()}


def owed_alerts(reports: dict[str, Any], policy: Policy, until: float) -> dict[str, Alert]:
    """Every alert the episodes owe by `until` (epoch seconds), derived by the product's offline
    driver (mispers.offline) from each report body as it was posted."""
    events = {episode_id: _event(body) for episode_id, body in reports.items()}
    return offline_owed_alerts(events, policy, dt.datetime.fromtimestamp(until, dt.UTC))


def _event(body: dict[str, Any]) -> Any:
    """A posted report body as the event the rules take."""
    return EVENT_ADAPTER.validate_json(
        json.dumps({k: body[k] for k in ("id", "source", "subject", "time", "type", "data")})
    )


async def agreement(
    st: Stack, service: Service, ids: list[str], owed: dict[str, Alert], until: float
) -> tuple[int, int, list[str]]:
    """Read `ids` by query and compare what each raised by `until` with what it owes: answers
    (episodes read, episodes that disagree, a sample of disagreements)."""
    client = await connect(service.settings(st.temporal_port))
    slots = asyncio.Semaphore(8)
    disagree: list[str] = []
    read = 0
    bar = progress()
    with bar:
        task = bar.add_task("checking the derivation against workflow state", total=len(ids))

        async def one(episode_id: str) -> None:
            nonlocal read
            state: EpisodeState | None = None
            async with slots:
                for _ in range(5):
                    with contextlib.suppress(RPCError):  # a query timed out under load
                        state = await query_episode_state(client, episode_id)
                        break
            bar.advance(task)
            if state is None:
                return
            read += 1
            raised = {
                a.alert_id: a.scheduled_at
                for a in state.alerts
                if a.scheduled_at.timestamp() <= until
            }
            wanted = {k: a.scheduled_at for k, a in owed.items() if a.episode_id == episode_id}
            if raised != wanted:
                disagree.append(f"{episode_id}: raised {sorted(raised)} owed {sorted(wanted)}")

        await asyncio.gather(*(one(e) for e in ids))
    return read, len(disagree), disagree[:5]


async def wait_delivered(receiver: AlertReceiver, expected: set[str], grace: float) -> float:
    started = time.monotonic()

    async def delivered() -> set[str]:
        return set(receiver.snapshot())

    with contextlib.suppress(AssertionError):  # what is still missing is reported as lost
        await eventually(delivered, lambda got: expected <= got, grace, 0.2, "delivery")
    return time.monotonic() - started


async def run_once(args: argparse.Namespace, run: int) -> dict[str, Any]:
    first_deadline = FIRST_MEDIUM_DEADLINE_S / args.time_scale
    with (
        AlertReceiver() as receiver,
        AlertReceiver() as raw_receiver,
        stack(
            {
                "MISPERS_TIME_SCALE": f"{args.time_scale:g}",
                "MISPERS_ALERT_WEBHOOK_URL": receiver.url,
                "MISPERS_WORKER_CACHE": str(args.worker_cache),
                "MISPERS_ANALYTICS_EXPORT": args.export,
            }
        ) as st,
    ):
        service = st.add_service("alerts", codec=True)
        ids = [f"A{run}-{i:05d}" for i in range(args.episodes)]
        policy = PinnedPolicy.pin(load_policy(), args.time_scale).policy
        peer: Peer | None = None
        if args.peer:
            cache = str(args.worker_cache)
            raw_pid = st.spawn(
                "raw-worker",
                [sys.executable, "-m", "bench.rawworker", st.address, RAW_QUEUE, cache],
            )
            ramp_s = args.episodes / args.ramp_rate if args.ramp_rate else REPORT_DEADLINE_S
            peer = Peer(
                client=await Client.connect(st.address),
                url=raw_receiver.url,
                policy=policy,
                # generous: a loaded ramp runs slower than offered; what falls after the
                # observation is not counted
                horizon_s=4 * ramp_s + first_deadline + args.observe + 300,
            )
        cpu0 = {
            name: cpu_seconds(pid)
            for name, pid in {**st.pids(service), "bench": os.getpid()}.items()
        }
        wall0 = time.time()
        reports: dict[str, Any] = {}
        timeline = Timeline(st, service, receiver, reports, path=timeline_path(args))
        sampling = asyncio.create_task(timeline.run())
        ramp_start, ramp_end, posts, retried = await ramp(service, ids, args, reports, peer)
        ids = list(reports)  # fewer than offered when --ramp-limit stopped the ramp
        opened = len(ids)
        rate = opened / (ramp_end - ramp_start)
        console.print(
            f"{opened} of {args.episodes} episodes open in {ramp_end - ramp_start:.0f} s "
            f"({rate:.1f} reports/s); {len(receiver.snapshot())} alerts so far"
        )
        mem = memory(st, service)
        console.print(
            f"RSS at {opened} open: worker {mem['worker_rss_mib']:.0f} MiB, server "
            f"{mem['server_rss_mib']:.0f} MiB, API {mem['api_rss_mib']:.0f} MiB"
        )
        reader = await connect(service.settings(st.temporal_port))
        reads = await supervisor_reads(service, ids, args.reads, reader)
        console.print(f"supervisor reads at {opened} open: {reads}")
        # every episode's first deadline: the last report's falls first_deadline after it
        observe_end = ramp_end + first_deadline + args.observe
        # the same reads again in the middle of the wave of first deadlines (alerts firing)
        wave_middle = ramp_start + first_deadline + (ramp_end - ramp_start) / 2
        peak = await observe_until(st, service, receiver, wave_middle)
        under_load = await supervisor_reads(service, ids, args.reads, reader)
        console.print(f"supervisor reads while alerts fire: {under_load}")
        later = await observe_until(st, service, receiver, observe_end)
        peak = {k: max(v, later[k]) for k, v in peak.items()}
        raised = owed_alerts(reports, policy, observe_end)
        expected = set(raised)
        waited = await wait_delivered(receiver, expected, args.grace)
        raw_due = {k: at for k, at in (peer.due if peer else {}).items() if at <= observe_end}
        if peer is not None:
            await wait_delivered(raw_receiver, set(raw_due), args.grace)
            raw_rss = rss_mib(raw_pid)
        # after the wait: an alert due just before the end may not have been raised at the end
        sample = random.Random(run).sample(ids, min(args.sample, len(ids)))
        sampled, disagreeing, disagreements = await agreement(
            st, service, sample, raised, observe_end
        )
        sampling.cancel()
        got = receiver.snapshot()
        raw_got = raw_receiver.snapshot()
        cpu = {
            name: cpu_seconds(pid) - cpu0[name]
            for name, pid in {**st.pids(service), "bench": os.getpid()}.items()
        }
        wall = time.time() - wall0
    lost = sorted(expected - set(got))
    lateness = [got[k].first_at - raised[k].scheduled_at.timestamp() for k in expected if k in got]
    raise_lag = [
        parse_time(got[k].body["raised_at"]) - raised[k].scheduled_at.timestamp()
        for k in expected
        if k in got
    ]
    # after the raise: from the task that raised the alert to its arrival at the webhook
    sent_lag = [
        got[k].first_at - parse_time(got[k].body["raised_at"]) for k in expected if k in got
    ]
    during = [
        got[k].first_at - raised[k].scheduled_at.timestamp()
        for k in expected
        if k in got and raised[k].scheduled_at.timestamp() <= ramp_end
    ]
    after = [
        got[k].first_at - raised[k].scheduled_at.timestamp()
        for k in expected
        if k in got and raised[k].scheduled_at.timestamp() > ramp_end
    ]
    duplicates = sum(r.count - 1 for r in got.values())
    raw_lateness = [raw_got[k].first_at - at for k, at in raw_due.items() if k in raw_got]
    raw_raise_lag = [
        parse_time(raw_got[k].body["raised_at"]) - at for k, at in raw_due.items() if k in raw_got
    ]
    raw_sent_lag = [
        raw_got[k].first_at - parse_time(raw_got[k].body["raised_at"])
        for k in raw_due
        if k in raw_got
    ]
    peer_figures: dict[str, Any] = {}
    if peer is not None:
        raw_p99 = percentile(raw_lateness, 99)
        peer_figures = {
            "raw_alerts_expected": len(raw_due),
            "raw_alerts_lost": len(set(raw_due) - set(raw_got)),
            "raw_lateness_p50": percentile(raw_lateness, 50),
            "raw_lateness_p95": percentile(raw_lateness, 95),
            "raw_lateness_p99": raw_p99,
            "raw_lateness_max": max(raw_lateness, default=float("nan")),
            "raw_raise_lag_p99": percentile(raw_raise_lag, 99),
            "raw_sent_lag_p99": percentile(raw_sent_lag, 99),
            "lateness_p99_over_raw": percentile(lateness, 99) / raw_p99 if raw_p99 else math.inf,
            "raw_worker_rss_mib": raw_rss,
        }
    result: dict[str, Any] = {
        "episodes": opened,
        "episodes_offered": args.episodes,
        "ramp_seconds": ramp_end - ramp_start,
        "reports_per_s": rate,
        "reports_retried_after_503": retried,
        "report_post_p50": percentile(posts, 50),
        "report_post_p95": percentile(posts, 95),
        **mem,
        **peak,
        **timeline.peaks(),
        "rss_at_open": timeline.at_open(max(1, args.episodes // 10)),
        "timeline": timeline.samples,
        **reads,
        **{f"{k}_during_alerts": v for k, v in under_load.items()},
        "derivation_checked": sampled,
        "derivation_disagreements": disagreeing,
        "disagreement_sample": disagreements,
        "alerts_expected": len(expected),
        "alerts_delivered": len(expected) - len(lost),
        "alerts_lost": len(lost),
        "lost_sample": lost[:10],
        "repeat_deliveries": duplicates,
        "alerts_during_ramp": len(during),
        "alerts_after_ramp": len(after),
        "lateness_p50": percentile(lateness, 50),
        "lateness_p95": percentile(lateness, 95),
        "lateness_p99": percentile(lateness, 99),
        "lateness_max": max(lateness, default=float("nan")),
        "lateness_after_ramp_p99": percentile(after, 99),
        "lateness_during_ramp_p99": percentile(during, 99),
        "raise_lag_p99": percentile(raise_lag, 99),
        "sent_lag_p99": percentile(sent_lag, 99),
        "waited_for_stragglers_s": waited,
        "cpu_share": {k: v / wall for k, v in cpu.items()},
        **peer_figures,
    }
    return result


def figures(med: dict[str, float], args: argparse.Namespace) -> list[Figure]:
    n = f"{med['episodes']:,.0f}"
    return [
        Figure(
            "episodes open",
            med["episodes"],
            "",
            note=f"time scale {args.time_scale:g}, worker cache {args.worker_cache}",
        ),
        Figure(
            "ramp: reports/s through the API",
            med["reports_per_s"],
            "reports/s",
            note=f"{med['reports_retried_after_503']:.0f} sent again after a 503",
        ),
        Figure("alerts due in the run", med["alerts_expected"], "alerts"),
        Figure(
            "owed alerts derived from the reports, checked against workflow state",
            med["derivation_disagreements"],
            "episodes disagree",
            "0",
            med["derivation_disagreements"] == 0,
            note=f"{med['derivation_checked']:.0f} episodes read by query",
        ),
        Figure(
            "alerts lost (due, never delivered)",
            med["alerts_lost"],
            "",
            "0",
            med["alerts_lost"] == 0,
        ),
        Figure("alert lateness p50", med["lateness_p50"], "s"),
        Figure("alert lateness p95", med["lateness_p95"], "s"),
        Figure("alert lateness p99", med["lateness_p99"], "s", "≤ 1 s", med["lateness_p99"] <= 1),
        Figure("alert lateness max", med["lateness_max"], "s"),
        Figure(
            "  p99 of alerts due while reports were arriving",
            med["lateness_during_ramp_p99"],
            "s",
            note=f"{med['alerts_during_ramp']:.0f} alerts",
        ),
        Figure(
            "  p99 of alerts due after the ramp",
            med["lateness_after_ramp_p99"],
            "s",
            note=f"{med['alerts_after_ramp']:.0f} alerts",
        ),
        Figure("  raise lag p99 (raised_at - scheduled_at)", med["raise_lag_p99"], "s"),
        Figure("  sent lag p99 (arrival - raised_at)", med["sent_lag_p99"], "s"),
        *peer_rows(med),
        Figure(
            f"worker RSS at {n} open",
            med["worker_rss_mib"],
            "MiB",
            "≤ 500 MB",
            med["worker_rss_mib"] * 1.048576 <= 500,
        ),
        Figure(
            "worker RSS peak in the run (sampled every 5 s, ramp included)",
            med["peak_worker_rss_mib_whole_run"],
            "MiB",
            "≤ 500 MB",
            med["peak_worker_rss_mib_whole_run"] * 1.048576 <= 500,
        ),
        Figure(f"server RSS at {n} open", med["server_rss_mib"], "MiB"),
        Figure(f"API RSS at {n} open", med["api_rss_mib"], "MiB"),
        Figure(
            "GET /v1/episodes?risk=high&overdue=true p95",
            med["list_high_overdue_p95"] * 1000,
            "ms",
            "≤ 300 ms",
            med["list_high_overdue_p95"] <= 0.3,
            note=f"p50 {med['list_high_overdue_p50'] * 1000:.0f} ms, page of "
            f"{med['list_high_overdue_page_len']:.0f}",
        ),
        Figure(
            "  the same list p95 while the first deadlines fall",
            med["list_high_overdue_p95_during_alerts"] * 1000,
            "ms",
            "≤ 300 ms",
            med["list_high_overdue_p95_during_alerts"] <= 0.3,
            note=f"p50 {med['list_high_overdue_p50_during_alerts'] * 1000:.0f} ms, page of "
            f"{med['list_high_overdue_page_len_during_alerts']:.0f}",
        ),
        Figure(
            "GET /v1/episodes/{id} p95",
            med["get_episode_p95"] * 1000,
            "ms",
            "≤ 100 ms",
            med["get_episode_p95"] <= 0.1,
            note=f"p50 {med['get_episode_p50'] * 1000:.0f} ms",
        ),
        Figure(
            "  GET /v1/episodes/{id} p95 while the first deadlines fall",
            med["get_episode_p95_during_alerts"] * 1000,
            "ms",
            "≤ 100 ms",
            med["get_episode_p95_during_alerts"] <= 0.1,
            note=f"p50 {med['get_episode_p50_during_alerts'] * 1000:.0f} ms",
        ),
        Figure(
            "  peer: the same episode by `state` query p95 (the read before the memo)",
            med["query_state_p95"] * 1000,
            "ms",
            note=f"while the deadlines fall: {med['query_state_p95_during_alerts'] * 1000:.0f} ms",
        ),
    ]


def peer_rows(med: dict[str, float]) -> list[Figure]:
    """The raw peer's lateness in the same run, and Mispers' p99 over it (target <= 2x)."""
    if "raw_lateness_p99" not in med:
        return []
    ratio = med["lateness_p99_over_raw"]
    return [
        Figure(
            "raw peer: alerts lost",
            med["raw_alerts_lost"],
            "",
            note=f"{med['raw_alerts_expected']:.0f} due, trivial workflows, same waves",
        ),
        Figure("raw peer: lateness p50", med["raw_lateness_p50"], "s"),
        Figure("raw peer: lateness p95", med["raw_lateness_p95"], "s"),
        Figure("raw peer: lateness p99", med["raw_lateness_p99"], "s"),
        Figure("raw peer: lateness max", med["raw_lateness_max"], "s"),
        Figure("raw peer: raise lag p99 (its task's time - due)", med["raw_raise_lag_p99"], "s"),
        Figure("raw peer: sent lag p99 (arrival - its task's time)", med["raw_sent_lag_p99"], "s"),
        Figure(
            "alert lateness p99 Mispers / p99 raw peer",
            ratio,
            "x",
            "≤ 2x",
            ratio <= 2,
            note=f"raw worker RSS {med['raw_worker_rss_mib']:.0f} MiB at the end",
        ),
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = bench_parser("python -m bench.alerts", __doc__)
    parser.add_argument("--episodes", type=int, default=10_000, help="episodes kept open")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=3.0,
        help="MISPERS_TIME_SCALE (3: a medium episode's first deadline falls "
        "20 min after its report, after a 10,000-episode ramp at 12/s)",
    )
    parser.add_argument(
        "--high-every",
        type=int,
        default=10,
        help="every n-th episode is reported at high risk (0: none)",
    )
    parser.add_argument("--concurrency", type=int, default=16, help="reports in flight")
    parser.add_argument(
        "--ramp-rate",
        type=float,
        default=12.0,
        help="reports/s offered while ramping (0: as fast as the service takes them); the "
        "first deadlines, and so the alerts, then fall at this rate",
    )
    parser.add_argument(
        "--ramp-limit",
        type=float,
        default=0.0,
        help="stop reporting after this many seconds and measure the episodes opened by then "
        "(0: no limit); for a run toward a size the machine may not reach in the time there is",
    )
    parser.add_argument(
        "--worker-cache",
        type=int,
        default=DEFAULT_WORKER_CACHE,
        help="MISPERS_WORKER_CACHE: workflows the worker keeps in memory (default: the "
        "service's); the raw peer gets the same",
    )
    parser.add_argument(
        "--export",
        choices=("on", "off"),
        default="on",
        help="MISPERS_ANALYTICS_EXPORT: the close-time analytics export (on, as shipped); run "
        "once each way for its cost (the episodes here stay open, so it should be none)",
    )
    parser.add_argument("--reads", type=int, default=200, help="calls of each supervisor read")
    parser.add_argument(
        "--observe",
        type=float,
        default=60.0,
        help="seconds observed after the last episode's first deadline window",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=120.0,
        help="seconds to wait for due alerts still in flight at the end",
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=200,
        help="episodes read by query to check the derived alerts against workflow state",
    )
    parser.add_argument(
        "--no-peer",
        dest="peer",
        action="store_false",
        help="leave out the raw peer (trivial workflows whose timers fall in the same waves)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are reported")
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.runs < 1 or args.time_scale <= 0:
        parser.error("--episodes and --runs must be at least 1, --time-scale above 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    info = machine_info()
    print_machine(info)
    console.print(
        f"alerts: {args.episodes} open episodes, time scale {args.time_scale:g} (first medium "
        f"deadline {FIRST_MEDIUM_DEADLINE_S / args.time_scale:.0f} s after report), "
        f"{args.runs} run(s)"
    )
    runs: list[dict[str, Any]] = []
    for run in range(args.runs):
        runs.append(asyncio.run(run_once(args, run)))
        if not args.no_json and args.runs > 1:
            # A run takes most of an hour: keep each one as it ends, so an interrupted
            # series still leaves the runs it finished.
            write_results(
                f"alerts-run{run + 1}", {"machine": info, "args": vars(args), "run": runs[-1]}
            )
    numeric = [k for k, v in runs[0].items() if isinstance(v, int | float)]
    med = {k: median([r[k] for r in runs]) for k in numeric}
    figs = figures(med, args)
    print_figures(
        f"Alerts at scale: {'median of ' if args.runs > 1 else ''}{args.runs} run(s)", figs
    )
    console.print(f"CPU share per process (of one core), last run: {runs[-1]['cpu_share']}")
    for count, sample in runs[-1]["rss_at_open"].items():
        console.print(
            f"at {count} open (t={sample['t']:.0f} s): worker {sample['worker_rss_mib']:.0f} MiB, "
            f"server {sample['server_rss_mib']:.0f} MiB, {sample['delivered']:.0f} alerts delivered"
        )
    if runs[-1]["disagreement_sample"]:
        console.print(f"[red]derivation disagrees[/]: {runs[-1]['disagreement_sample']}")
    if runs[-1]["lost_sample"]:
        console.print(f"[red]lost alert ids (sample)[/]: {runs[-1]['lost_sample']}")
    payload = {
        "machine": info,
        "args": vars(args),
        "runs": runs,
        "median": med,
        "figures": [f.__dict__ for f in figs],
    }
    if not args.no_json:
        write_results("alerts", payload)
    return payload


if __name__ == "__main__":
    main()
