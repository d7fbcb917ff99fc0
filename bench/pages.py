"""The dashboard's page timings at N open episodes.

`python -m bench.pages [--episodes 2000 --reads 200 --batch 100 --max-minutes 30]`: starts
the stack as `mispers dev` does (bench/common.py), reports N open episodes (one in ten high
risk) in CloudEvents batches, signs a sergeant in with a one-time link and times, one request
at a time, the open-episodes page (six visibility counts, one page of 50, the audit record) and
one episode's page (the episode's `state` query, the audit record) for random episodes. Each
page is followed by its peer in the API, the same read as JSON with a token (GET /v1/episodes
?open=true&page_size=50, GET /v1/episodes/{id} of the same episode), so what the page itself
adds is seen in the same run. Targets: the open-episodes page p95 ≤ 300 ms, an episode's page
p95 ≤ 150 ms (at 10,000 open).

The ramp is the long part (about 10 reports/s on 2 cores): its rate and the projected end are
printed as it goes, and a ramp projected past `--max-minutes` stops early with the projection
rather than running on (0: no bound). `--ramp-minutes M` instead reports for at most M minutes
and measures at the episodes opened by then: the run toward a size the machine cannot reach in
a session (100,000). Either way the run prints the RSS of the worker, the server and the API at
the size reached, each one's share of a core during the ramp (which of them saturates first),
and the ramp's rate over each tenth of the episodes offered (whether it slows as they grow).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import random
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench.common import (
    Figure,
    console,
    cpu_seconds,
    machine_info,
    percentile,
    print_figures,
    print_machine,
    progress,
    report,
    rss_mib,
    stack,
    write_results,
)
from mispers.api.auth import load_secret
from mispers.domain.types import Rank, Role
from mispers.web.tickets import mint_ticket

LIST_PEER = "/v1/episodes?open=true&page_size=50"


class RampTooSlow(Exception):
    """The ramp would run past --max-minutes: stopped early, the projection says by how much."""


@dataclass
class Ramp:
    """What the ramp opened, how fast, and how fast in each tenth of it."""

    opened: int
    seconds: float
    tenths: list[float]

    @property
    def rate(self) -> float:
        return self.opened / self.seconds


async def open_episodes(
    url: str, token: str, ids: list[str], batch: int, max_minutes: float, ramp_minutes: float
) -> Ramp:
    """Report the episodes, `batch` per request, until all are open or `ramp_minutes` pass."""
    bar = progress()
    started = time.perf_counter()
    tenth = max(batch, len(ids) // 10)
    marks = [started]
    done = 0
    async with httpx.AsyncClient(
        base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=300
    ) as http:
        with bar:
            task = bar.add_task(f"reporting {len(ids)} episodes", total=len(ids))
            for start in range(0, len(ids), batch):
                chunk = ids[start : start + batch]
                body = [
                    report(e, f"C-{e}", "high" if (start + i) % 10 == 0 else "medium")
                    for i, e in enumerate(chunk)
                ]
                answer = await http.post(
                    "/v1/events",
                    json=body,
                    headers={"content-type": "application/cloudevents-batch+json"},
                )
                answer.raise_for_status()
                refused = [item for item in answer.json() if item["status"] == "rejected"]
                if refused:
                    raise RuntimeError(f"{len(refused)} reports refused: {refused[0]}")
                bar.advance(task, len(chunk))
                done = start + len(chunk)
                took = time.perf_counter() - started
                rate = done / took
                projected = len(ids) / rate / 60
                bar.update(task, description=f"reporting ({rate:.1f}/s, ~{projected:.0f} min)")
                if done // tenth > len(marks) - 1:
                    marks.append(time.perf_counter())
                if ramp_minutes:
                    if took > ramp_minutes * 60:
                        break
                elif max_minutes and done >= max(batch, len(ids) // 20) and projected > max_minutes:
                    raise RampTooSlow(
                        f"ramp at {rate:.1f} reports/s: {len(ids)} would take "
                        f"{projected:.0f} min, more than --max-minutes {max_minutes:g}"
                    )
    tenths = [tenth / (b - a) for a, b in itertools.pairwise(marks)]
    return Ramp(opened=done, seconds=time.perf_counter() - started, tenths=tenths)


async def sign_in(http: httpx.AsyncClient, secret: bytes) -> None:
    ticket = mint_ticket(secret, Role.SUPERVISOR, "SGT-BENCH", Rank.SERGEANT)
    answer = await http.post("/ui/signin", data={"ticket": ticket})
    page = await http.get(answer.headers["location"])
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf, "no CSRF token on the purpose page"
    await http.post("/ui/purpose", data={"csrf_token": csrf.group(1), "purpose": "supervision"})


async def timed(http: httpx.AsyncClient, path: str, **headers: str) -> float:
    sent = time.perf_counter()
    answer = await http.get(path, headers=headers)
    took = time.perf_counter() - sent
    if answer.status_code != 200:
        raise RuntimeError(f"{path} answered {answer.status_code}")
    return took


async def run(args: argparse.Namespace) -> dict[str, Any]:
    ids = [f"BP-{i:06d}" for i in range(args.episodes)]
    begun = time.perf_counter()
    console.print(f"started {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}")
    with stack() as st:
        service = st.add_service("pages")
        pids = st.pids(service)
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        ramp = await open_episodes(
            service.url, service.token, ids, args.batch, args.max_minutes, args.ramp_minutes
        )
        cpu = {name: (cpu_seconds(pid) - cpu0[name]) / ramp.seconds for name, pid in pids.items()}
        rss = {name: rss_mib(pid) for name, pid in pids.items()}
        ids = ids[: ramp.opened]
        console.print(
            f"{ramp.opened} of {args.episodes} episodes open in {ramp.seconds / 60:.1f} min "
            f"({ramp.rate:.1f} reports/s; at this rate 100,000 take "
            f"{100_000 / ramp.rate / 3600:.1f} h); RSS MiB {rss}; share of a core {cpu}; "
            f"reports/s by tenth {[round(r, 1) for r in ramp.tenths]}"
        )
        secret = load_secret(service.settings(st.temporal_port), env={})
        bearer = {"authorization": f"Bearer {service.token}"}
        async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
            await sign_in(http, secret)
            # Visibility is eventually consistent: wait until the counts have them all.
            deadline = time.monotonic() + max(120, len(ids) / 20)
            while time.monotonic() < deadline:
                page = await http.get("/ui/episodes")
                found = re.search(r'id="count-open">(\d+)<', page.text)
                if found and int(found.group(1)) >= len(ids):
                    break
                await asyncio.sleep(1)  # polling the index, not waiting for work
            rng = random.Random(7)
            await timed(http, "/ui/episodes")  # warm the templates and the connection
            bar = progress()
            lists: list[float] = []
            singles: list[float] = []
            api_lists: list[float] = []
            api_singles: list[float] = []
            with bar:
                task = bar.add_task("page views and their API peers", total=4 * args.reads)
                for _ in range(args.reads):
                    lists.append(await timed(http, "/ui/episodes"))
                    api_lists.append(await timed(http, LIST_PEER, **bearer))
                    chosen = rng.choice(ids)
                    singles.append(await timed(http, f"/ui/episodes/{chosen}"))
                    api_singles.append(await timed(http, f"/v1/episodes/{chosen}", **bearer))
                    bar.advance(task, 4)
    return {
        "episodes": len(ids),
        "episodes_offered": args.episodes,
        "ramp_seconds": ramp.seconds,
        "reports_per_s": ramp.rate,
        "reports_per_s_by_tenth": ramp.tenths,
        "rss_mib": rss,
        "cpu_share_during_ramp": cpu,
        "list_p50": percentile(lists, 50),
        "list_p95": percentile(lists, 95),
        "episode_p50": percentile(singles, 50),
        "episode_p95": percentile(singles, 95),
        "api_list_p95": percentile(api_lists, 95),
        "api_episode_p95": percentile(api_singles, 95),
        "reads": args.reads,
        "wall_s": time.perf_counter() - begun,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--max-minutes", type=float, default=30, help="stop a ramp projected past this (0: none)"
    )
    parser.add_argument(
        "--ramp-minutes",
        type=float,
        default=0,
        help="report for at most this long, then measure what is open (0: open them all)",
    )
    parser.add_argument("--no-json", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    info = machine_info()
    print_machine(info)
    try:
        result = asyncio.run(run(args))
    except RampTooSlow as exc:
        console.print(f"[red bold]stopped[/]: {exc}")
        raise SystemExit(2) from None
    n = result["episodes"]
    print_figures(
        f"dashboard pages at {n} open episodes",
        [
            Figure("episodes open", n, "", note=f"of {args.episodes} offered"),
            Figure(
                "reports/s while opening",
                result["reports_per_s"],
                "reports/s",
                note="by tenth: " + ", ".join(f"{r:.1f}" for r in result["reports_per_s_by_tenth"]),
            ),
            *(
                Figure(f"{name} RSS at {n} open", mib, "MiB")
                for name, mib in result["rss_mib"].items()
            ),
            *(
                Figure(f"{name} share of a core while opening", share, "cores")
                for name, share in result["cpu_share_during_ramp"].items()
            ),
            Figure(
                "GET /ui/episodes p95",
                result["list_p95"] * 1000,
                "ms",
                "≤ 300 ms",
                result["list_p95"] <= 0.3,
                note=f"p50 {result['list_p50'] * 1000:.0f} ms, {args.reads} views; "
                f"peer GET /v1/episodes?open=true&page_size=50 p95 "
                f"{result['api_list_p95'] * 1000:.0f} ms",
            ),
            Figure(
                "GET /ui/episodes/{id} p95",
                result["episode_p95"] * 1000,
                "ms",
                "≤ 150 ms",
                result["episode_p95"] <= 0.15,
                note=f"p50 {result['episode_p50'] * 1000:.0f} ms, {args.reads} views; "
                f"peer GET /v1/episodes/{{id}} p95 {result['api_episode_p95'] * 1000:.0f} ms",
            ),
            Figure("wall time of the run", result["wall_s"] / 60, "min"),
        ],
    )
    if not args.no_json:
        path = write_results("pages", {"machine": info, "args": vars(args), "result": result})
        console.print(f"results: {path}")
    return result


if __name__ == "__main__":
    main()
