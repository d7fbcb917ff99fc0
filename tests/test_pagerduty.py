"""The PagerDuty Events API v2 sink against a local receiver that checks every event against the
v2 schema: trigger, acknowledge and resolve follow the alert under one dedup_key; a 429 or 5xx is
retried with back-off; a 400 is logged and counted, not retried for ever."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from prometheus_client import REGISTRY
from temporalio.testing import WorkflowEnvironment

from mispers.config import Settings
from mispers.domain.types import Role
from mispers.policy import PinnedPolicy
from tests.conftest import eventually
from tests.harness import STARTED, EpisodeDriver, terminate_running
from tests.test_alert_lifecycle_timeskipping import ack
from worker import build_worker

pytestmark = pytest.mark.integration

ROUTING_KEY = "R0123456789abcdef0123456789abcde"  # 32 characters, as PagerDuty issues them

# The Events API v2 request (developer.pagerduty.com, "Send an Alert Event").
V2_EVENT = {
    "type": "object",
    "required": ["routing_key", "event_action"],
    "additionalProperties": False,
    "properties": {
        "routing_key": {"type": "string", "minLength": 32, "maxLength": 32},
        "event_action": {"enum": ["trigger", "acknowledge", "resolve"]},
        "dedup_key": {"type": "string", "minLength": 1, "maxLength": 255},
        "client": {"type": "string"},
        "client_url": {"type": "string"},
        "links": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["href"],
                "properties": {"href": {"type": "string"}, "text": {"type": "string"}},
            },
        },
        "images": {"type": "array"},
        "payload": {
            "type": "object",
            "required": ["summary", "source", "severity"],
            "additionalProperties": False,
            "properties": {
                "summary": {"type": "string", "minLength": 1, "maxLength": 1024},
                "source": {"type": "string", "minLength": 1},
                "severity": {"enum": ["critical", "error", "warning", "info"]},
                "timestamp": {"type": "string", "format": "date-time"},
                "component": {"type": "string"},
                "group": {"type": "string"},
                "class": {"type": "string"},
                "custom_details": {"type": "object"},
            },
        },
    },
    "if": {"properties": {"event_action": {"const": "trigger"}}},
    "then": {"required": ["payload"]},
    "else": {"required": ["dedup_key"]},
}


class PagerDutyReceiver:
    """Answers as PagerDuty does: 202 for a valid event, 400 for an invalid one; `script` holds
    status codes to answer first (one per request), to play throttling and outages."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[float, int, dict[str, Any]]] = []
        self.script: dict[str, list[int]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                try:
                    jsonschema.validate(body, V2_EVENT)
                    status = 202
                except jsonschema.ValidationError:
                    status = 400
                with receiver.lock:
                    planned = receiver.script.get(body.get("event_action", ""), [])
                    if status == 202 and planned:
                        status = planned.pop(0)
                    receiver.requests.append((time.monotonic(), status, body))
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.end_headers()
                answer = {"status": "success" if status == 202 else "invalid event"}
                self.wfile.write(json.dumps(answer).encode())

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v2/enqueue"

    def seen(self, action: str) -> list[tuple[float, int, dict[str, Any]]]:
        with self.lock:
            return [r for r in self.requests if r[2]["event_action"] == action]


@contextmanager
def pagerduty() -> Iterator[PagerDutyReceiver]:
    receiver = PagerDutyReceiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


@pytest.fixture
async def pd() -> AsyncIterator[PagerDutyReceiver]:
    with pagerduty() as receiver:
        yield receiver


@pytest.fixture
async def driver(
    dev_env: WorkflowEnvironment, pinned: PinnedPolicy, pd: PagerDutyReceiver, tmp_path: Path
) -> AsyncIterator[EpisodeDriver]:
    queue = f"pd-{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=tmp_path, pagerduty_routing_key=ROUTING_KEY, pagerduty_url=pd.url)
    async with build_worker(dev_env.client, settings, task_queue=queue):
        # 1 h of systems checks in 1.8 s: real time, so the retries' back-off is real too.
        yield EpisodeDriver(
            dev_env, PinnedPolicy.pin(pinned.policy, 2000), queue, f"P-{uuid.uuid4().hex[:8]}"
        )
        await terminate_running(dev_env.client, STARTED)


def rejected(action: str) -> float:
    value = REGISTRY.get_sample_value("mispers_pagerduty_rejected_total", {"action": action})
    return value or 0.0


async def test_lifecycle_reaches_pagerduty_throttling_retried_invalid_counted(
    driver: EpisodeDriver, pd: PagerDutyReceiver
) -> None:
    pd.script["trigger"] = [429, 503]  # throttled, then an outage, then taken
    before = rejected("acknowledge")
    await driver.send("episode.reported", {"initial_risk": "high"})
    l1 = f"{driver.episode_id}:systems_checks:L1"
    taken = await eventually(
        lambda: [r for r in pd.seen("trigger") if r[1] == 202 and r[2]["dedup_key"] == l1],
        bool,
        within=30,
    )
    tries = [r for r in pd.seen("trigger") if r[2]["dedup_key"] == l1]
    assert [status for _, status, _ in tries] == [429, 503, 202]
    gaps = [b[0] - a[0] for a, b in pairwise(tries)]
    assert gaps[1] >= 0.9  # the server-side retry waits (1 s, then doubling)
    event = taken[0][2]
    assert event["routing_key"] == ROUTING_KEY and event["payload"]["severity"] == "critical"
    details = event["payload"]["custom_details"]
    assert details["rank"] == "sergeant" and details["kind"] == "systems_checks"
    assert "child" not in json.dumps(details) and "name" not in details

    # An acknowledgement PagerDuty refuses (400) is logged and counted, then left alone.
    pd.script["acknowledge"] = [400]
    assert (await ack(driver, l1, "SGT-1", Role.SUPERVISOR)).status == "accepted"
    await eventually(lambda: rejected("acknowledge"), lambda v: v == before + 1)
    await driver.send("enquiry.recorded")
    resolved = await eventually(lambda: pd.seen("resolve"), bool, within=30)
    assert resolved[0][1] == 202 and resolved[0][2]["dedup_key"] == l1
    assert len(pd.seen("acknowledge")) == 1  # never retried
    print(f"\nPagerDuty retry gaps: {', '.join(f'{g:.2f} s' for g in gaps)}")
