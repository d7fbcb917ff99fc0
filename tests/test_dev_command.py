"""`mispers dev` (what `make run` runs) on a fresh data directory: the engine, the worker and the
API come up, the demo curl it prints reports an episode that `mispers episodes show` and
`temporal workflow list` both see, and SIGINT stops all three cleanly."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import signal
import stat
import sys
from pathlib import Path

import httpx
import pytest

from mispers.dev import port_open
from mispers.engine.embedded import venv_binary
from testkit.receivers import free_port
from tests.conftest import eventually, repo_root, run_command

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def read_until(stream: asyncio.StreamReader, marker: str, seen: list[str]) -> str:
    while True:
        line = (await stream.readline()).decode()
        if not line:
            raise AssertionError(f"`mispers dev` ended before {marker!r}:\n{''.join(seen)}")
        seen.append(line)
        if marker in line:
            return line


def payloads_text(history_json: str) -> str:
    """Every payload's metadata and data in a `temporal workflow show -o json` output, decoded
    from base64 (the CLI prints payload bytes that way)."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "data" in node and isinstance(node.get("metadata"), dict):
                for value in [node["data"], *node["metadata"].values()]:
                    if isinstance(value, str):
                        with contextlib.suppress(ValueError):
                            found.append(base64.b64decode(value).decode(errors="replace"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(history_json))
    return "\n".join(found)


async def test_dev_starts_everything_runs_the_demo_and_stops_cleanly(tmp_path: Path) -> None:
    temporal_port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "MISPERS_DATA_DIR": str(tmp_path / "data"),
        "MISPERS_HTTP_PORT": str(http_port),
        "MISPERS_EMBEDDED_TEMPORAL_PORT": str(temporal_port),
        "MISPERS_TIME_SCALE": "3600",  # the 1-hour systems checks fall due after a second
    }
    for inherited in ("MISPERS_TEMPORAL_ADDRESS", "MISPERS_JWT_SECRET", "MISPERS_KEYS"):
        env.pop(inherited, None)
    dev = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mispers",
        "dev",
        cwd=repo_root(),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert dev.stdout is not None
    seen: list[str] = []
    try:
        await asyncio.wait_for(read_until(dev.stdout, "report a demo episode", seen), 90)
        curl = (await dev.stdout.readline()).decode().strip()
        assert curl.startswith("curl ") and f":{http_port}/v1/events" in curl

        # The banner's sign-in link opens the dashboard, once.
        link = next(line.strip() for line in seen if "/ui/signin?ticket=" in line)
        assert link.startswith(f"http://127.0.0.1:{http_port}/ui/signin?ticket=")
        async with httpx.AsyncClient() as browser:
            confirm = await browser.get(link)
            assert confirm.status_code == 200 and "Sign in as DEMO-SGT" in confirm.text
            ticket = link.split("ticket=", 1)[1]
            signed = await browser.post(
                f"http://127.0.0.1:{http_port}/ui/signin", data={"ticket": ticket}
            )
            assert signed.status_code == 303 and "/ui/purpose" in signed.headers["location"]
            # On to the dashboard itself: the purpose asked once, then the open episodes.
            asked = await browser.get(f"http://127.0.0.1:{http_port}{signed.headers['location']}")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', asked.text)
            assert asked.status_code == 200 and csrf, asked.text
            given = await browser.post(
                f"http://127.0.0.1:{http_port}/ui/purpose",
                data={"csrf_token": csrf.group(1), "purpose": "supervision"},
            )
            assert given.status_code == 303 and given.headers["location"] == "/ui/episodes"
            home = await browser.get(f"http://127.0.0.1:{http_port}/ui/episodes")
            assert (
                home.status_code == 200
                and '<h1 class="govuk-heading-l">Open episodes</h1>' in home.text
            )
            assert "Signed in as <strong>DEMO-SGT</strong>" in home.text
            again = await browser.post(
                f"http://127.0.0.1:{http_port}/ui/signin", data={"ticket": ticket}
            )
            assert again.status_code == 403

        code, answer = await run_command("bash", "-c", curl, env=env)
        assert code == 0 and '"status":"accepted"' in answer, answer
        ring = tmp_path / "data" / "keys.json"
        assert ring.exists()  # the ring was made on first start
        assert stat.S_IMODE(ring.stat().st_mode) == 0o600

        code, shown = await run_command(
            sys.executable, "-m", "mispers", "episodes", "show", "DEMO-1", env=env
        )
        assert code == 0 and "DEMO-CHILD" in shown and "episode.reported" in shown, shown

        async def listed() -> str:
            return (
                await run_command(
                    str(venv_binary("temporal")),
                    "workflow",
                    "list",
                    "--address",
                    f"127.0.0.1:{temporal_port}",
                    "--query",
                    "RiskLevel='medium' AND EpisodeStatus='missing'",
                    env=env,
                )
            )[1]

        await eventually(listed, lambda out: "episode-DEMO-1" in out, within=30)

        # The history through the Temporal CLI, as the README shows it: ciphertext without the
        # codec server, the events with it (a supervisor's token), and the decode is audited.
        code, supervisor = await run_command(
            sys.executable, "-m", "mispers", "token", "--role", "supervisor",
            "--subject", "insp-1", "--rank", "inspector", env=env,
        )  # fmt: skip
        assert code == 0, supervisor
        show = [
            str(venv_binary("temporal")), "workflow", "show", "-w", "episode-DEMO-1",
            "--address", f"127.0.0.1:{temporal_port}", "--output", "json",
        ]  # fmt: skip
        code, sealed = await run_command(*show, env=env)
        assert code == 0, sealed
        assert "binary/encrypted" in payloads_text(sealed)
        assert "last_seen_at" not in payloads_text(sealed)  # the report's fields, sealed
        code, opened = await run_command(
            *show,
            "--codec-endpoint", f"http://127.0.0.1:{http_port}/codec",
            "--codec-auth", f"Bearer {supervisor.strip()}",
            env=env,
        )  # fmt: skip
        assert code == 0 and "last_seen_at" in payloads_text(opened), opened
        code, audit = await run_command(
            sys.executable, "-m", "mispers", "audit", "--subject", "insp-1", "--json", env=env
        )
        assert code == 0, audit
        decodes = [json.loads(line) for line in audit.splitlines() if '"decode_payloads"' in line]
        assert decodes and "DEMO-1" in decodes[0]["target"]["episode_ids"]
        assert decodes[0]["who"] == {"subject": "insp-1", "role": "supervisor", "rank": "inspector"}

        # The missed deadline's alert is raised in the worker process; the API's /metrics
        # relays the worker's counter, so one scrape shows it.
        code, token = await run_command(
            sys.executable, "-m", "mispers", "token", "--role", "auditor", "--subject", "t", env=env
        )
        assert code == 0, token

        async def scrape() -> str:
            async with httpx.AsyncClient() as http:
                answer = await http.get(
                    f"http://127.0.0.1:{http_port}/metrics",
                    headers={"Authorization": f"Bearer {token.strip()}"},
                )
                return answer.text

        metrics = await eventually(
            scrape, lambda text: 'mispers_alerts_raised_total{rank="sergeant"}' in text, within=30
        )
        assert (
            'mispers_events_accepted_total{status="accepted",type="mispers.episode.reported"} 1.0'
            in metrics
        )
        assert "mispers_worker_metrics_up 1.0" in metrics
    finally:
        if dev.returncode is None:
            dev.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(dev.communicate(), 60)
        # shown with the failure when any step above fails (pytest prints a failed test's
        # captured output), so a refused or dropped request comes with what the service said
        print("".join(seen) + rest.decode())
    output = "".join(seen) + rest.decode()
    assert dev.returncode == 0, output
    assert "stopping" in output
    assert not port_open(temporal_port) and not port_open(http_port)  # nothing left behind
