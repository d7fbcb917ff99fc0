"""The access audit's cost: `python -m bench.audit [--verify-records 1000000 --reads 400]`.

(1) records/s the default sink (the chained JSON-lines file) sustains through its async path,
    as the API calls it, with 16 callers at once, with `MISPERS_AUDIT_FSYNC=always` and `never`;
(2) GET /v1/episodes/{id} p50/p95 on one stack (embedded server, worker, two API processes on
    one data directory): one API audits to the file (fsync always, as shipped), the other to a
    sink that stores nothing; reads alternate between them so both see the same load;
(3) `mispers audit verify` over a chain of N records (default one million), run as the CLI."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    Figure,
    console,
    free_port,
    machine_info,
    percentile,
    print_figures,
    print_machine,
    report,
    stack,
    write_results,
)
from mispers.config import Settings
from mispers.dev import http_ok
from mispers.security.audit import AuditRecord, JsonlAuditSink
from mispers.security.audit_chain import GENESIS, seal


class NullSink:
    """Stores nothing: the API with it measures a read without the audit's write."""

    async def record(self, entry: AuditRecord) -> str:
        return GENESIS

    def lines(self) -> Iterator[bytes]:
        return iter(())


def null_sink(settings: Settings) -> NullSink:
    return NullSink()


def sample(n: int) -> AuditRecord:
    return AuditRecord.now(
        subject=f"INSP-{n % 50}",
        role="supervisor",
        rank="inspector",
        action="read_episode",
        episode_id=f"EP-2026-{n:07d}",
        child_ref=f"C-{n % 9000:05d}",
        client="10.20.30.40",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) mispers-dashboard",
        purpose="Review before the 10:00 strategy meeting",
        detail={"found": True},
    )


async def sink_rate(directory: Path, fsync: bool, records: int, callers: int = 16) -> float:
    sink = JsonlAuditSink(directory / f"audit-{fsync}.jsonl", fsync=fsync)
    entries = [sample(n) for n in range(records)]
    queue = iter(entries)

    async def caller() -> None:
        for entry in queue:
            await sink.record(entry)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    took = time.perf_counter() - started
    sink.close()
    return records / took


def write_chain(path: Path, records: int) -> None:
    """A chain of `records` realistic records, sealed as the sink seals them."""
    template = sample(0).body_json()
    prev = GENESIS
    with path.open("w") as out:
        for n in range(records):
            body = template.replace("EP-2026-0000000", f"EP-2026-{n:07d}")
            line, prev = seal(prev, body)
            out.write(line + "\n")


async def verify_seconds(data_dir: Path) -> tuple[float, str]:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mispers",
        "audit",
        "verify",
        env={"MISPERS_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    took = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"verify failed: {output.decode()}")
    return took, output.decode().strip()


async def read_latencies(reads: int) -> tuple[list[float], list[float]]:
    with stack() as st:
        service = st.add_service("audit")
        bare_port = free_port()
        env = {
            **st.base_env,
            "MISPERS_DATA_DIR": str(service.data_dir),
            "MISPERS_TEMPORAL_ADDRESS": st.address,
            "MISPERS_HTTP_PORT": str(bare_port),
            "MISPERS_TASK_QUEUE": service.task_queue,
            "MISPERS_AUDIT_SINK": "bench.audit:null_sink",
        }
        proc = st.dev.spawn("audit-api-bare", [sys.executable, "-m", "mispers", "api"], env)
        bare = f"http://127.0.0.1:{bare_port}"
        st.dev.wait_until(proc, lambda: http_ok(f"{bare}/healthz"), "API up")
        headers = {"authorization": f"Bearer {service.token}"}
        audited: list[float] = []
        plain: list[float] = []
        async with httpx.AsyncClient(timeout=30, headers=headers) as http:
            episodes = [f"AUD-{n:03d}" for n in range(20)]
            for n, episode in enumerate(episodes):
                answer = await http.post(
                    f"{service.url}/v1/events",
                    json=report(episode, f"C-AUD-{n}"),
                    headers={"content-type": "application/cloudevents+json"},
                )
                answer.raise_for_status()
            for url in (service.url, bare):  # warm both
                for episode in episodes:
                    (await http.get(f"{url}/v1/episodes/{episode}")).raise_for_status()
            for n in range(reads):
                episode = episodes[n % len(episodes)]
                for url, into in ((service.url, audited), (bare, plain))[:: 1 if n % 2 else -1]:
                    started = time.perf_counter()
                    answer = await http.get(
                        f"{url}/v1/episodes/{episode}", headers={"X-Mispers-Purpose": "bench"}
                    )
                    into.append(time.perf_counter() - started)
                    answer.raise_for_status()
        return audited, plain


async def main(args: argparse.Namespace) -> None:
    info = machine_info()
    print_machine(info)
    figures: list[Figure] = []
    results: dict[str, Any] = {"machine": info}
    with tempfile.TemporaryDirectory(prefix="mispers-audit-") as tmp:
        root = Path(tmp)
        always = await sink_rate(root, True, args.fsync_records)
        never = await sink_rate(root, False, args.records)
        results["sink"] = {"always": always, "never": never}
        figures.append(Figure("sink, fsync always (16 callers)", always, "records/s"))
        figures.append(Figure("sink, fsync never (16 callers)", never, "records/s"))

        chain_dir = root / "chain"
        chain_dir.mkdir()
        started = time.perf_counter()
        write_chain(chain_dir / "audit.jsonl", args.verify_records)
        console.print(
            f"wrote {args.verify_records:,} chained records "
            f"({(chain_dir / 'audit.jsonl').stat().st_size / 2**20:,.0f} MiB) "
            f"in {time.perf_counter() - started:.1f} s"
        )
        took, output = await verify_seconds(chain_dir)
        console.print(output)
        results["verify"] = {"records": args.verify_records, "seconds": took}
        figures.append(
            Figure(
                f"mispers audit verify, {args.verify_records:,} records (CLI, start-up included)",
                took,
                "s",
                target="< 60 s",
                ok=took < 60,
            )
        )

    audited, plain = await read_latencies(args.reads)
    results["reads"] = {"audited": audited, "plain": plain}
    for name, values in (("audited (file, fsync always)", audited), ("not audited", plain)):
        for p in (50, 95):
            figures.append(
                Figure(f"GET /v1/episodes/{{id}} p{p}, {name}", percentile(values, p) * 1000, "ms")
            )
    print_figures("access audit", figures)
    console.print(f"results: {write_results('audit', results)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000, help="records, fsync never")
    parser.add_argument("--fsync-records", type=int, default=3_000, help="records, fsync always")
    parser.add_argument("--verify-records", type=int, default=1_000_000)
    parser.add_argument("--reads", type=int, default=400, help="reads of each API")
    asyncio.run(main(parser.parse_args()))
