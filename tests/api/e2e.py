"""Helpers of the end-to-end tests: events stamped now, posted over HTTP with a role's token."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx

from mispers.api.envelope import BATCH_MEDIA_TYPE, STRUCTURED_MEDIA_TYPE
from mispers.domain.types import Role
from testkit.factories import envelope, merge
from tests.api.conftest import Stack
from tests.conftest import eventually


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def event(
    kind: str, episode_id: str, data: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    return envelope(kind, episode_id, now(), data, **kw)


def report(
    episode_id: str,
    child_ref: str,
    risk: str = "medium",
    data: dict[str, Any] | None = None,
    **kw: Any,
) -> dict[str, Any]:
    stamp = now().isoformat()
    base = {"child": {"child_ref": child_ref}, "last_seen_at": stamp, "initial_risk": risk}
    return event("episode.reported", episode_id, merge(base, data or {}), **kw)


async def post(
    http: httpx.AsyncClient, stack: Stack, document: Any, role: Role = Role.SUPERVISOR
) -> httpx.Response:
    media = BATCH_MEDIA_TYPE if isinstance(document, list) else STRUCTURED_MEDIA_TYPE
    return await http.post(
        "/v1/events",
        content=json.dumps(document),
        headers={"content-type": media, **stack.headers(role)},
    )


async def accepted(
    http: httpx.AsyncClient, stack: Stack, document: dict[str, Any], role: Role = Role.SUPERVISOR
) -> dict[str, Any]:
    response = await post(http, stack, document, role)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert body == {
        "episode_id": document["subject"],
        "event_id": document["id"],
        "status": "accepted",
    }
    return body


async def state(http: httpx.AsyncClient, stack: Stack, episode_id: str) -> dict[str, Any]:
    response = await http.get(f"/v1/episodes/{episode_id}", headers=stack.headers(Role.AUDITOR))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def listed(
    http: httpx.AsyncClient, stack: Stack, until: Any, within: float = 20, **params: Any
) -> list[dict[str, Any]]:
    """Visibility is eventually consistent: poll the list until `until(episodes)` holds."""

    async def probe() -> list[dict[str, Any]]:
        response = await http.get(
            "/v1/episodes", params=params, headers=stack.headers(Role.OFFICER)
        )
        assert response.status_code == 200, response.text
        episodes: list[dict[str, Any]] = response.json()["episodes"]
        return episodes

    return await eventually(probe, until, within=within)


def outstanding(episode: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in episode["obligations"] if o["status"] in ("open", "overdue")]
