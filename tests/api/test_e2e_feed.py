"""A recorded feed posted with the `cloudevents` SDK as the client (structured and binary mode),
and the `mispers send` / `mispers episodes` commands against the running API."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from datetime import datetime as _dt
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.core.bindings.http import to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from mispers.domain.types import Role
from tests.api.conftest import Stack, unique
from tests.api.e2e import event, post, report, state
from tests.conftest import eventually, run_command

isoparse = _dt.fromisoformat

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FEED = Path(__file__).parent / "data" / "sample_feed.ndjson"
_TIME_FIELDS = ("last_seen_at", "seen_at", "found_at")


def recorded_feed() -> list[dict[str, Any]]:
    """The feed as recorded, moved in time so its last event happened a second ago: deadlines
    then fall as they did on the day (spacing kept), not a year overdue."""
    events = [json.loads(line) for line in FEED.read_text().splitlines() if line.strip()]
    last = max(isoparse(e["time"]) for e in events)
    shift = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1) - last

    def moved(value: str) -> str:
        moved_time: str = (isoparse(value) + shift).isoformat()
        return moved_time

    for e in events:
        e["time"] = moved(e["time"])
        for name in _TIME_FIELDS:
            if name in e["data"]:
                e["data"][name] = moved(e["data"][name])
    return events


def sdk_event(document: dict[str, Any]) -> CloudEvent:
    attributes = {k: v for k, v in document.items() if k not in ("data", "specversion")}
    attributes["time"] = isoparse(attributes["time"])
    return CloudEvent(attributes, document["data"])


async def test_recorded_feed_through_the_cloudevents_sdk(
    http: httpx.AsyncClient, stack: Stack
) -> None:
    feed = recorded_feed()
    answers = []
    for number, document in enumerate(feed):
        encode = to_binary if number % 2 else to_structured
        message = encode(sdk_event(document), JSONFormat())
        response = await http.post(
            "/v1/events",
            content=message.body,
            headers={**message.headers, **stack.headers(Role.SYSTEM)},
        )
        assert response.status_code == 202, (document["id"], response.text)
        answers.append(response.json())
    assert [a["status"] for a in answers] == ["accepted"] * len(feed)
    assert [a["event_id"] for a in answers] == [e["id"] for e in feed]

    replay = await post(http, stack, feed, Role.SYSTEM)  # the same feed again, as one batch
    assert [a["status"] for a in replay.json()] == ["duplicate"] * len(feed)

    for episode_id in {e["subject"] for e in feed}:
        episode = await state(http, stack, episode_id)
        sent = [e for e in feed if e["subject"] == episode_id]
        timeline = episode["timeline"]
        posted = [t for t in timeline if t["source"] != "mispers"]  # not an alert's own step
        assert sorted(t["event_id"] for t in posted) == sorted(e["id"] for e in sent)
        assert [t["time"] for t in timeline] == sorted(t["time"] for t in timeline)
        assert episode["status"] == "found"
    first = feed[0]["data"]["child"]["child_ref"]
    record = await eventually(
        lambda: http.get(f"/v1/children/{first}", headers=stack.headers(Role.OFFICER)),
        lambda r: r.status_code == 200,
    )
    assert record.json()["episodes"][0]["episode_id"] == feed[0]["subject"]


async def cli(stack: Stack, *args: str) -> tuple[int, str]:
    env = {**os.environ, "MISPERS_DATA_DIR": str(stack.settings.data_dir), "COLUMNS": "200"}
    env.pop("MISPERS_JWT_SECRET", None)
    return await run_command(sys.executable, "-m", "mispers", *args, "--url", stack.url, env=env)


async def test_mispers_send_then_episodes_list_and_show(stack: Stack, tmp_path: Path) -> None:
    ep, child = unique("EP"), unique("C")
    events = [
        report(ep, child, "high"),
        event("enquiry.recorded", ep),
        event("crime.recorded", unique("EP")),  # never reported: refused with 404
    ]
    events.append(events[0])  # a duplicate
    feed = tmp_path / "events.ndjson"
    feed.write_text("\n".join(json.dumps(e) for e in events) + "\n")

    code, output = await cli(stack, "send", str(feed))
    assert code == 1, output  # one event refused
    assert "accepted" in output and "│ 2 " in output.replace("2      ", "2 ")
    assert "404 episode-not-found" in output

    async def listing() -> str:
        return (await cli(stack, "episodes", "list", "--child-ref", child, "--risk", "high"))[1]

    assert ep in await eventually(listing, lambda out: ep in out, within=30)
    code, output = await cli(stack, "episodes", "show", ep)
    assert code == 0, output
    assert "systems_checks" in output and "enquiry.recorded" in output  # obligation and timeline
    assert "enquiry" in output
    assert "Jessica" not in output  # the child's name is in the state, never printed
