"""A promise of the pages over real HTTP: a downgrade resting on the child's history, posted
by an officer, is refused on the page with the rule named, as the API refuses it: only a
supervisor may lower a grade at all, so the role rule answers first."""

from __future__ import annotations

import re

import httpx
import pytest

from mispers.domain.types import Rank, Role
from mispers.web.tickets import mint_ticket
from tests.api.conftest import Stack, unique
from tests.api.e2e import accepted, report, state

pytestmark = pytest.mark.integration


def rows(page: str) -> list[str]:
    return re.findall(r'data-episode="([^"]+)"', page)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "a form without its CSRF token"
    return found.group(1)


async def signed_in(ui: httpx.AsyncClient, secret: bytes, role: Role, rank: Rank) -> None:
    ticket = mint_ticket(secret, role, f"{rank.value.upper()}-PAGING", rank)
    answer = await ui.post("/ui/signin", data={"ticket": ticket})
    page = await ui.get(answer.headers["location"])
    await ui.post("/ui/purpose", data={"csrf_token": csrf_of(page.text), "purpose": "supervision"})


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
