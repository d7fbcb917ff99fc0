"""The open-episodes list's filters (risk, status, overdue, flag) over real HTTP, each answered
by the same visibility query as GET /v1/episodes with the same filters."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from mispers.domain.types import Rank, Role
from mispers.web.tickets import mint_ticket
from tests.api.conftest import Stack, unique
from tests.api.e2e import accepted, event, listed, now, report, state

pytestmark = pytest.mark.integration


def rows(html: str) -> set[str]:
    return set(re.findall(r'data-episode="([^"]+)"', html))


async def test_filters_pick_the_episodes_the_api_picks(stack: Stack, secret: bytes) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        await filters_pick(stack, secret, http)


async def filters_pick(stack: Stack, secret: bytes, http: httpx.AsyncClient) -> None:
    cared_for, found = unique("EP-LA"), unique("EP-FOUND")
    looked_after = {"child": {"looked_after": True}}
    await accepted(http, stack, report(cared_for, unique("C-LA"), risk="medium", data=looked_after))
    await accepted(http, stack, report(found, unique("C-F"), risk="low"))
    await accepted(http, stack, event("child.found", found, {"found_at": now().isoformat()}))

    def has(episode_id: str) -> Any:
        return lambda episodes: any(e["episode_id"] == episode_id for e in episodes)

    await listed(http, stack, has(cared_for), within=30, flag="looked_after", page_size=1000)
    await listed(http, stack, has(found), within=30, status="found", page_size=1000)

    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as ui:
        ticket = mint_ticket(secret, Role.SUPERVISOR, "SGT-FILTER", Rank.SERGEANT)
        answer = await ui.post("/ui/signin", data={"ticket": ticket})
        page = await ui.get(answer.headers["location"])
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf
        await ui.post("/ui/purpose", data={"csrf_token": csrf.group(1), "purpose": "supervision"})

        async def shown(**params: str) -> set[str]:
            page = await ui.get("/ui/episodes", params=params)
            assert page.status_code == 200, page.text
            return rows(page.text) & {cared_for, found}

        assert await shown() == {cared_for, found}
        assert await shown(flag="looked_after") == {cared_for}
        assert await shown(status="found") == {found}
        assert await shown(status="missing") == {cared_for}
        # Risk as graded (a floor may have raised the report's grade): each level its own.
        levels = {e: (await state(http, stack, e))["risk"]["level"] for e in (cared_for, found)}
        for level in ("high", "medium", "low", "very_low"):
            assert await shown(risk=level) == {e for e, lv in levels.items() if lv == level}
        assert await shown(overdue="yes") == set()  # nothing is due yet at full time scale
        assert await shown(overdue="no", flag="looked_after") == {cared_for}
        # A filter value that is not one is ignored, as a person typing a URL would expect.
        assert await shown(risk="extreme") == {cared_for, found}
