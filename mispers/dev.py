"""`mispers dev`: the embedded default on one machine — Temporal dev server (SQLite file),
worker and API as child processes, each waited on until healthy; SIGINT/SIGTERM stops them in
order (API, worker, server) so in-flight work finishes and everything persisted survives."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from mispers.config import Settings
from mispers.engine.embedded import start_dev_command
from worker import HEALTH_FILE


class DevError(Exception):
    """Start-up failed; the message says which part and where its log is."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]


@dataclass
class DevStack:
    settings: Settings
    children: list[Child] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> Child:
        log_path = self.settings.data_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 (closed in stop())
        process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        child = Child(name, process, log_path, log)
        self.children.append(child)
        return child

    def wait_until(
        self, child: Child, ready: Callable[[], bool], what: str, within: float = 60.0
    ) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                raise DevError(
                    f"{child.name} exited with code {child.process.returncode} before {what}; "
                    f"see {child.log_path}"
                )
            if ready():
                return
            time.sleep(0.2)
        raise DevError(
            f"{child.name}: {what} did not happen within {within:.0f}s; see {child.log_path}"
        )

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
                try:
                    child.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait()
            child.log.close()

    def first_exited(self) -> Child | None:
        return next((c for c in self.children if c.process.poll() is not None), None)


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


def fresh_file(path: Path, since: float) -> bool:
    return path.exists() and path.stat().st_mtime >= since - 1


def api_available() -> bool:
    try:
        import mispers.api  # noqa: F401
    except ImportError:
        return False
    return True


def run_dev(settings: Settings, say: Callable[[str], None]) -> int:
    """Start everything, wait for a signal or a child's death, stop everything. Exit code."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    stack = DevStack(settings)
    env = dict(os.environ)
    env["MISPERS_DATA_DIR"] = str(settings.data_dir)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if settings.embedded:
            port = settings.embedded_temporal_port
            if port_open(port):
                raise DevError(
                    f"port {port} is already in use: stop what holds it, or set "
                    "MISPERS_EMBEDDED_TEMPORAL_PORT, or MISPERS_TEMPORAL_ADDRESS to use it"
                )
            server = stack.spawn(
                "temporal", start_dev_command(settings.temporal_db_path, port), env
            )
            stack.wait_until(server, lambda: port_open(port), f"listening on port {port}")
            stack.wait_until(
                server, lambda: http_ok(f"http://127.0.0.1:{port + 1000}/"), "Web UI up"
            )
            say(f"Temporal dev server on 127.0.0.1:{port} (data: {settings.temporal_db_path})")
            env["MISPERS_TEMPORAL_ADDRESS"] = f"127.0.0.1:{port}"
        mispers = [sys.executable, "-m", "mispers"]
        if "MISPERS_WORKER_METRICS_PORT" not in env:
            env["MISPERS_WORKER_METRICS_PORT"] = str(settings.http_port + 1)
        env.setdefault(
            "MISPERS_WORKER_METRICS_URL",
            f"http://{settings.http_host}:{env['MISPERS_WORKER_METRICS_PORT']}/metrics",
        )
        since = time.time()
        worker = stack.spawn("worker", [*mispers, "worker"], env)
        health = settings.data_dir / HEALTH_FILE
        stack.wait_until(worker, lambda: fresh_file(health, since), "worker polling")
        say(f"worker polling task queue '{settings.task_queue}'")
        api_url = f"http://{settings.http_host}:{settings.http_port}"
        if api_available():
            api = stack.spawn("api", [*mispers, "api"], env)
            stack.wait_until(api, lambda: http_ok(f"{api_url}/healthz"), "API answering /healthz")
            say(f"API on {api_url} (docs: {api_url}/docs)")
        if settings.embedded:
            say(f"Temporal Web UI: http://127.0.0.1:{settings.embedded_temporal_port + 1000}")
        say(f"logs: {settings.data_dir / 'logs'}; Ctrl-C stops everything cleanly")
        if api_available():
            say(dashboard_link(settings))
            say(demo_curl(api_url))
        while not stopping:
            dead = stack.first_exited()
            if dead is not None:
                raise DevError(
                    f"{dead.name} exited unexpectedly (code {dead.process.returncode}); "
                    f"see {dead.log_path}"
                )
            time.sleep(0.5)
        say("stopping: API, worker, then the Temporal server")
        return 0
    finally:
        with contextlib.suppress(Exception):
            stack.stop()


def dashboard_link(settings: Settings) -> str:
    """A one-time sign-in link for a demo supervisor (`mispers open` makes more)."""
    import datetime as dt

    from mispers.api.auth import load_secret
    from mispers.cli.web import signin_link
    from mispers.domain.types import Rank, Role
    from mispers.web.config import web_settings
    from mispers.web.tickets import mint_ticket

    config = web_settings(settings)
    if not config.tickets:
        return f"dashboard: {config.public_url}/ui/episodes (sign in with your force account)"
    ticket = mint_ticket(
        load_secret(settings),
        Role.SUPERVISOR,
        "DEMO-SGT",
        Rank.SERGEANT,
        ttl=dt.timedelta(minutes=15),
    )
    return (
        "dashboard, signed in as a demo sergeant (one use, 15 minutes; "
        "`.venv/bin/mispers open --role supervisor --subject YOU` makes another):\n"
        f"  {signin_link(config.public_url, ticket)}"
    )


def demo_curl(api_url: str) -> str:
    body = (
        '{"specversion":"1.0","id":"demo-1","source":"demo","type":"mispers.episode.reported",'
        '"subject":"DEMO-1","time":"\'"$(date -u +%Y-%m-%dT%H:%M:%SZ)"\'","data":{"child":'
        '{"child_ref":"DEMO-CHILD","date_of_birth":"2012-05-01","looked_after":false},'
        '"last_seen_at":"\'"$(date -u +%Y-%m-%dT%H:%M:%SZ)"\'","initial_risk":"medium",'
        '"reported_by":{"role":"parent"},"officer_id":"PC-1"}}'
    )
    return (
        "report a demo episode:\n"
        f"  curl -s -X POST {api_url}/v1/events "
        '-H "Authorization: Bearer $(.venv/bin/mispers token --role system --subject demo)" '
        f"-H 'Content-Type: application/cloudevents+json' -d '{body}'"
    )
