"""`mispers dev` (what `make run` runs) on a fresh data directory: the engine, the worker and the
API come up, the demo curl it prints reports an episode that `mispers episodes show` and
`temporal workflow list` both see, and SIGINT stops all three cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
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

        code, answer = await run_command("bash", "-c", curl, env=env)
        assert code == 0 and '"status":"accepted"' in answer, answer
        assert (tmp_path / "data" / "keys.json").exists()  # the ring was made on first start

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
    output = "".join(seen) + rest.decode()
    assert dev.returncode == 0, output
    assert "stopping" in output
    assert not port_open(temporal_port) and not port_open(http_port)  # nothing left behind
