"""Two promises of the pages over real HTTP: the open-episodes list pages through every open
episode once, with the same visibility query as GET /v1/episodes, and a downgrade resting on the
child's history, posted by an officer, is refused on the page with the rule named, as the API
refuses it: only a supervisor may lower a grade at all, so the role rule answers first."""

from __future__ import annotations

import html
import re

import httpx
import pytest

from mispers.domain.types import Rank, Role
from mispers.web.pages import PAGE_SIZE
from mispers.web.tickets import mint_ticket
from tests.api.conftest import Stack, unique
from tests.api.e2e import accepted, listed, report, state

pytestmark = pytest.mark.integration


def rows(page: str) -> list[str]:
    """The episodes of the list's table rows (nothing else on the page)."""
    return re.findall(r'<tr class="govuk-table__row" data-episode="([^"]+)"', page)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "a form without its CSRF token"
    return found.group(1)


async def signed_in(ui: httpx.AsyncClient, secret: bytes, role: Role, rank: Rank) -> None:
    ticket = mint_ticket(secret, role, f"{rank.value.upper()}-PAGING", rank)
    answer = await ui.post("/ui/signin", data={"ticket": ticket})
    page = await ui.get(answer.headers["location"])
    await ui.post("/ui/purpose", data={"csrf_token": csrf_of(page.text), "purpose": "supervision"})


async def test_the_list_pages_through_every_open_episode_once(stack: Stack, secret: bytes) -> None:
    """More than a page of this test's own episodes, on a stack other tests share: each of them
    on exactly one page, no row twice, and nothing shown that the API does not list as open."""
    mine = {unique("EP-PAGE") for _ in range(PAGE_SIZE + 1)}
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        for episode in sorted(mine):
            await accepted(http, stack, report(episode, unique("C-PAGE"), risk="low"))
        before = await listed(
            http,
            stack,
            lambda e: mine <= {x["episode_id"] for x in e},
            within=60,
            open="true",
            page_size=1000,
        )
        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as ui:
            await signed_in(ui, secret, Role.SUPERVISOR, Rank.SERGEANT)
            seen: list[str] = []
            url: str | None = "/ui/episodes"
            pages = 0
            while url is not None:
                page = await ui.get(url)
                assert page.status_code == 200, page.text
                shown = rows(page.text)
                assert 0 < len(shown) <= PAGE_SIZE
                seen += shown
                pages += 1
                following = re.search(r'href="([^"]+)" rel="next"', page.text)
                url = html.unescape(following.group(1)) if following else None
        after = await listed(http, stack, lambda _: True, open="true", page_size=1000)
    assert pages >= 2
    assert len(seen) == len(set(seen)), "an episode shown on two pages"
    assert mine <= set(seen), "an open episode on no page"
    assert set(seen) <= {e["episode_id"] for e in before + after}, "a row the API does not list"


async def test_an_officers_downgrade_resting_on_history_is_refused_on_the_page(
    stack: Stack, secret: bytes
) -> None:
    episode = unique("EP-HIST")
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        await accepted(http, stack, report(episode, unique("C-HIST"), risk="high"))
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as ui:
        await signed_in(ui, secret, Role.OFFICER, Rank.OFFICER)
        page = await ui.get(f"/ui/episodes/{episode}")
        assert page.status_code == 200, page.text
        answer = await ui.post(
            f"/ui/episodes/{episode}/risk",
            data={
                "csrf_token": csrf_of(page.text),
                "level": "medium",
                "rationale": "she always comes back by the morning",
            },
        )
        assert answer.status_code == 403, answer.text
        assert "govuk-error-summary" in answer.text
        assert "rule: downgrade_needs_supervisor" in answer.text
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        assert (await state(http, stack, episode))["risk"]["level"] == "high"
