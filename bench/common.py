"""Shared pieces of the benchmarks: the stack (embedded server, workers, APIs) on free ports in
a temporary data directory, tokens minted by Mispers' own code, CloudEvent builders with no
personal data, percentiles, machine and version facts, progress bars and the results file.

Nothing here sleeps to wait for work: every wait polls a condition against a deadline."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from mispers.api.auth import load_secret, mint_token
from mispers.config import Settings
from mispers.dev import DevStack, fresh_file, http_ok, port_open
from mispers.domain.types import Rank, Role
from mispers.engine.embedded import start_dev_command, venv_binary
from mispers.security.keyring import open_ring
from testkit.waiting import eventually
from worker import HEALTH_FILE

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
console = Console(highlight=False, width=max(120, Console().width))


# --- numbers --------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


@dataclass
class Figure:
    """One published figure: compared with its target (when it has one) and printed."""

    name: str
    value: float
    unit: str
    target: str = ""
    ok: bool | None = None  # None: no target
    note: str = ""

    def verdict(self) -> str:
        if self.ok is None:
            return ""
        return "met" if self.ok else "MISSED target"


def print_figures(
    title: str, figures: Sequence[Figure], machine: dict[str, Any] | None = None
) -> None:
    """The summary table; given the machine facts, captioned with the date and the commit so a
    pasted table says which code and which day it measured."""
    caption = None
    if machine is not None:
        caption = f"{machine['date']}, commit {machine.get('commit', 'unknown')}"
    table = Table(title=title, caption=caption)
    for column in ("figure", "measured", "target", "verdict", "note"):
        table.add_column(column)
    for f in figures:
        shown = f"{f.value:.3g}" if abs(f.value) < 1000 else f"{f.value:.0f}"
        verdict = f.verdict()
        style = "red bold" if verdict == "MISSED target" else ""
        table.add_row(f.name, f"{shown} {f.unit}", f.target, verdict, f.note, style=style)
    console.print(table)
    for f in figures:
        if f.ok is False:
            console.print(
                f"[red bold]MISSED target[/]: {f.name} = {f.value:.3g} {f.unit} (target {f.target})"
            )


# --- machine and versions -------------------------------------------------------------------


def memory_total_gib() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return float("nan")


def temporal_cli_version() -> str:
    try:
        out = subprocess.run(
            [str(venv_binary("temporal")), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except Exception as exc:  # a missing binary is reported, not fatal to the report
        return f"unknown ({type(exc).__name__})"
    return out.stdout.strip().removeprefix("temporal version ")


def git_commit() -> str:
    """The commit measured, marked `-dirty` when the work tree differs from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except Exception as exc:  # not a checkout (an sdist): said so, not fatal
        return f"unknown ({type(exc).__name__})"
    return head + ("-dirty" if dirty else "")


def machine_info() -> dict[str, Any]:
    load1, load5, load15 = os.getloadavg()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "cores": os.cpu_count(),
        "memory_gib": round(memory_total_gib(), 1),
        "load_average": [round(load1, 2), round(load5, 2), round(load15, 2)],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "temporal_cli": temporal_cli_version(),
    }


def print_machine(info: dict[str, Any]) -> None:
    console.print(
        f"[bold]machine[/]: {info['cores']} cores, {info['memory_gib']} GiB, load "
        f"{' '.join(str(x) for x in info['load_average'])} ({info['platform']}); "
        f"python {info['python']}, temporalio {info['temporalio']}, "
        f"temporal CLI {info['temporal_cli']}; {info['date']}, commit {info['commit']}"
    )


def results_path(name: str, suffix: str = "json") -> Path:
    """A new file in bench/results, stamped with the time in UTC."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return RESULTS_DIR / f"{name}-{stamp}.{suffix}"


def write_results(name: str, payload: dict[str, Any]) -> Path:
    path = results_path(name)
    path.write_text(json.dumps(payload, indent=2, default=str))
    console.print(f"results written to {path.relative_to(REPO)}")
    return path


def results_payload(
    name: str,
    machine: dict[str, Any],
    args: Any,
    figures: Sequence[Figure],
    data: dict[str, Any],
) -> dict[str, Any]:
    """What every bench keeps of a run: the machine, its arguments, its data and figures;
    written to bench/results/ unless `--no-json`."""
    payload = {
        "machine": machine,
        "args": vars(args),
        **data,
        "figures": [f.__dict__ for f in figures],
    }
    if not args.no_json:
        write_results(name, payload)
    return payload


class RateColumn(ProgressColumn):
    """Items a second over the last samples: with the ETA, what a long run is heading for."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.1f}/s")


def progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


# --- ports, processes, RSS ------------------------------------------------------------------


def free_port(avoid: set[int] | None = None) -> int:
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if not avoid or port not in avoid:
            return port


def free_server_port() -> int:
    """A port for the dev server whose Web UI port (port + 1000) is free as well."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port + 1000 > 65535:
            continue
        if not port_open(port + 1000):
            with socket.socket() as ui:
                try:
                    ui.bind(("127.0.0.1", port + 1000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair for the dev server and its UI")


def rss_mib(pid: int) -> float:
    """Resident set size of one process (VmRSS), MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


# --- the stack --------------------------------------------------------------------------------


@dataclass
class Service:
    """One Mispers worker + API pair with its own data directory (key ring, JWT secret)."""

    name: str
    data_dir: Path
    http_port: int
    task_queue: str
    codec: bool
    worker_pid: int = 0
    api_pid: int = 0
    token: str = ""
    # an inspector: waiving what is left at closure is theirs to do (the bench token is a sergeant)
    closer_token: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def settings(self, temporal_port: int) -> Settings:
        return Settings(
            data_dir=self.data_dir,
            http_port=self.http_port,
            temporal_address=f"127.0.0.1:{temporal_port}",
            task_queue=self.task_queue,
        )


@dataclass
class Stack:
    """The embedded dev server (flags of `make run`) plus workers and APIs as subprocesses,
    started and stopped like `mispers dev` does (mispers.dev.DevStack)."""

    root: Path
    temporal_port: int
    dev: DevStack
    server_pid: int = 0
    services: list[Service] = field(default_factory=list)

    base_env: dict[str, str] = field(default_factory=dict)

    def pids(self, service: Service) -> dict[str, int]:
        """The processes a bench reads RSS and CPU of: the service's worker and API, the server."""
        return {"worker": service.worker_pid, "server": self.server_pid, "api": service.api_pid}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    def add_service(
        self,
        name: str,
        *,
        codec: bool = True,
        task_queue: str | None = None,
        extra_env: dict[str, str] | None = None,
        api: bool = True,
    ) -> Service:
        data_dir = self.root / name
        data_dir.mkdir(parents=True, exist_ok=True)
        service = Service(
            name=name,
            data_dir=data_dir,
            http_port=free_port(),
            task_queue=task_queue or f"mispers-{name}",
            codec=codec,
        )
        settings = service.settings(self.temporal_port)
        # The ring and the secret exist before any process starts (as `mispers keys init`
        # would make them for an external server): no two processes race to create them.
        open_ring(settings, create=True)
        secret = load_secret(settings, env={})
        service.token = mint_token(secret, Role.SUPERVISOR, "bench")
        service.closer_token = mint_token(secret, Role.SUPERVISOR, "bench", rank=Rank.INSPECTOR)
        env = dict(self.base_env)
        env.update(
            {
                "MISPERS_DATA_DIR": str(data_dir),
                "MISPERS_TEMPORAL_ADDRESS": self.address,
                "MISPERS_HTTP_PORT": str(service.http_port),
                "MISPERS_TASK_QUEUE": service.task_queue,
            }
        )
        env.update(extra_env or {})
        launcher = [sys.executable, "-m", "mispers" if codec else "bench.plain"]
        since = time.time()
        worker = self.dev.spawn(f"{name}-worker", [*launcher, "worker"], env)
        service.worker_pid = worker.process.pid
        self.dev.wait_until(
            worker, lambda: fresh_file(data_dir / HEALTH_FILE, since), "worker polling"
        )
        if api:
            proc = self.dev.spawn(f"{name}-api", [*launcher, "api"], env)
            service.api_pid = proc.process.pid
            self.dev.wait_until(proc, lambda: http_ok(f"{service.url}/healthz"), "API up")
        self.services.append(service)
        return service

    def spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> int:
        full = dict(self.base_env)
        full.update(env or {})
        return self.dev.spawn(name, cmd, full).process.pid

    def stop(self) -> None:
        self.dev.stop()


def _base_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISPERS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env["MISPERS_LOG_LEVEL"] = "warning"
    env.update(extra or {})
    return env


@contextmanager
def stack(extra_env: dict[str, str] | None = None, keep: bool = False) -> Iterator[Stack]:
    """An embedded dev server with exactly the flags `make run` uses, on a free port, persisted
    to a SQLite file in a temporary directory; every process is stopped on exit."""
    root = Path(tempfile.mkdtemp(prefix="mispers-bench-"))
    port = free_server_port()
    dev = DevStack(Settings(data_dir=root))
    st = Stack(root=root, temporal_port=port, dev=dev, base_env=_base_env(extra_env))
    try:
        server = dev.spawn("temporal", start_dev_command(root / "temporal.db", port), st.base_env)
        st.server_pid = server.process.pid
        dev.wait_until(server, lambda: port_open(port), f"listening on {port}")
        dev.wait_until(server, lambda: http_ok(f"http://127.0.0.1:{port + 1000}/"), "Web UI up")
        yield st
    finally:
        st.stop()
        if not keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)


# --- CloudEvents with no personal data ------------------------------------------------------

_AT = "2026-01-01T00:00:00+00:00"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def cloud_event(kind: str, episode_id: str, event_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "bench/driver",
        "type": f"mispers.{kind}",
        "subject": episode_id,
        "time": now_iso(),
        "data": data,
    }


def report(episode_id: str, child_ref: str, risk: str = "medium") -> dict[str, Any]:
    stamp = now_iso()
    return cloud_event(
        "episode.reported",
        episode_id,
        f"{episode_id}-r",
        {
            "child": {"child_ref": child_ref, "date_of_birth": "2012-01-01", "looked_after": False},
            "last_seen_at": stamp,
            "initial_risk": risk,
            "reported_by": {"role": "parent"},
            "officer_id": "PC-1",
        },
    )


def stream_event(episode_id: str, index: int, child_ref: str) -> dict[str, Any]:
    """Event `index` (0-based) of a typical episode: report, enquiries, contact, sightings,
    found, safe and well, return interview; then further enquiries. All accepted by the rules."""
    eid = f"{episode_id}-{index}"
    stamp = now_iso()
    where = {"description": "bench place", "postcode": "ZZ1 1ZZ"}
    steps: list[tuple[str, dict[str, Any]]] = [
        ("enquiry.recorded", {"kind": "systems_checked", "outcome": "done", "officer_id": "PC-1"}),
        (
            "social_services.contacted",
            {
                "direction": "outbound",
                "authority": "LA-1",
                "contact_name": "duty desk",
                "method": "phone",
                "purpose": "missing_notification",
                "summary": "notified",
                "officer_id": "PC-1",
            },
        ),
        ("sighting.reported", {"seen_at": stamp, "location": where}),
        ("enquiry.recorded", {"kind": "hospitals", "outcome": "none", "officer_id": "PC-1"}),
        (
            "child.found",
            {"found_at": stamp, "location": where, "found_by": "PC-2", "seen_in_person": True},
        ),
        ("safe_and_well.completed", {"officer_id": "PC-2", "in_person": True, "outcome": "well"}),
        ("return_interview.completed", {"provider": "RHI-1", "outcome": "held"}),
    ]
    if index == 0:
        return report(episode_id, child_ref)
    if index <= len(steps):
        kind, data = steps[index - 1]
    else:
        kind, data = ("enquiry.recorded", {"kind": "other", "outcome": "n/a", "officer_id": "PC-1"})
    return cloud_event(kind, episode_id, eid, data)


CLOSE_ATTEMPTS = 5


async def close_via_api(http: Any, episode_id: str, token: str) -> int:
    """Close a found episode as a supervisor does: every open obligation waived. The child's
    record can add obligations between the read and the approval (then it is refused naming
    them, and asked again). Returns when the episode reads as closed; the POSTs it took."""
    posts = 0
    for attempt in range(CLOSE_ATTEMPTS):
        state = (await http.get(f"/v1/episodes/{episode_id}")).json()
        waivers = [
            {"obligation_id": o["id"], "reason": "bench closure"}
            for o in state["obligations"]
            if o["status"] in ("open", "overdue") and o["kind"] != "closure_review"
        ]
        body = cloud_event(
            "closure.approved",
            episode_id,
            f"{episode_id}-close-{attempt}",
            {"supervisor_id": "SGT-1", "rank": "inspector", "rationale": "bench",
             "waivers": waivers},
        )  # fmt: skip
        answer = await http.post(
            "/v1/events",
            json=body,
            headers={
                "content-type": "application/cloudevents+json",
                "authorization": f"Bearer {token}",
            },
        )
        posts += 1
        if answer.status_code == 202 and answer.json().get("status") == "accepted":
            break
        if "open_obligations" not in answer.text:
            raise RuntimeError(
                f"closure of {episode_id} answered {answer.status_code}: {answer.text}"
            )
    else:
        raise RuntimeError(f"episode {episode_id} still refuses closure")

    async def status() -> str:
        return str((await http.get(f"/v1/episodes/{episode_id}")).json()["status"])

    await eventually(status, lambda s: s == "closed", 60.0, what="episode closed")
    return posts


# --- a webhook receiver that timestamps every alert -----------------------------------------


@dataclass
class Received:
    first_at: float
    count: int
    body: dict[str, Any]


class AlertReceiver:
    """Counts alert deliveries by alert_id, with the wall-clock time of the first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.alerts: dict[str, Received] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                at = time.time()
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
                with receiver._lock:
                    seen = receiver.alerts.get(body["alert_id"])
                    if seen is None:
                        receiver.alerts[body["alert_id"]] = Received(at, 1, body)
                    else:
                        seen.count += 1
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/alerts"

    def snapshot(self) -> dict[str, Received]:
        with self._lock:
            return dict(self.alerts)

    def __enter__(self) -> AlertReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def parse_time(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


def bench_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """A bench's command line: its docstring as the help, and `--no-json`, which every bench
    honours when it writes its results."""
    parser = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--no-json", action="store_true", help="do not write bench/results/")
    return parser
