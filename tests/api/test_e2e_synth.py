"""A synthetic stream from `mispers synth` posted with `mispers send` to the running service:
every episode is taken up, and the events the rules see as the synthesis saw them are accepted.

Two differences a live service makes, both about acknowledgements: it records the events now,
days after they happened, so it raises the escalation alerts of those days as it catches up while
the events arrive (an acknowledgement that arrives before its alert is refused as unknown), and
an acknowledgement must come from the person acknowledging (one token posts the whole file, so
the others' acknowledgements are refused, 403). Every other event must be accepted."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from pathlib import Path

import httpx
import pytest

from mispers.domain.types import Role
from tests.api.conftest import Stack
from tests.api.test_e2e_feed import cli
from tests.conftest import run_command

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def test_a_synthetic_stream_posts_to_the_service(stack: Stack, tmp_path: Path) -> None:
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=4)).date().isoformat()
    feed = tmp_path / "synth.ndjson"
    env = {**os.environ, "MISPERS_DATA_DIR": str(tmp_path / "data")}
    code, output = await run_command(
        sys.executable,
        "-m",
        "mispers",
        "synth",
        "--episodes",
        "8",
        "--days",
        "2",
        "--seed",
        "9",
        "--start",
        start,
        "--out",
        str(feed),
        "--processes",
        "1",
        env=env,
    )
    assert code == 0, output
    events = [json.loads(line) for line in feed.read_text().splitlines()]
    episodes = {e["subject"] for e in events}
    assert len(episodes) == 8
    code, output = await cli(stack, "send", str(feed), "--role", "supervisor")
    acks = sum(1 for e in events if e["type"] == "mispers.alert.acknowledged")
    if "refused, by reason" in output:  # only acknowledgements of alerts not yet raised
        table = output.split("refused, by reason")[1].split("first refusals")[0]
        reasons = dict(re.findall(r"│ ([^│]+?)\s+│ (\d+)\s+│", table))
        assert set(reasons) <= {"409 unknown_alert", "403 forbidden"}, output
        assert sum(int(n) for n in reasons.values()) <= acks
    else:
        assert code == 0, output
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        for episode_id in sorted(episodes):
            answer = await http.get(
                f"/v1/episodes/{episode_id}", headers=stack.headers(Role.AUDITOR)
            )
            assert answer.status_code == 200, episode_id
            timeline = answer.json()["timeline"]
            sent = [e for e in events if e["subject"] == episode_id]
            others = [e["id"] for e in sent if e["type"] != "mispers.alert.acknowledged"]
            assert set(others) <= {t["event_id"] for t in timeline}, episode_id
