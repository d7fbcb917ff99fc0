"""The open-episodes list brings itself up to date every 15 seconds in the browser, and without
JavaScript a reload (or the page's own "Refresh the list" link) does the same. The browser's
clock is Playwright's, paused and run forward by the test: the page's own timer fires, its
request is real, and no test waits for time to pass."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Locator, Page
from playwright.async_api import TimeoutError as PageTimeout

from mispers.domain.types import Rank, Role
from tests.api.conftest import Stack
from tests.api.e2e import listed
from tests.conftest import eventually
from tests.web.conftest import Browsers
from tests.web.test_journeys import overdue_episode

pytestmark = pytest.mark.integration

REFRESH_MS = 15_000
# The list shown: high-risk overdue episodes, newest first from the index, so ours is on page 1.
LIST = "/ui/episodes?risk=high&overdue=yes"


def row(page: Page, episode_id: str) -> Locator:
    return page.locator(f"#episodes-table tr[data-episode='{episode_id}']")


async def test_the_list_refreshes_itself_every_15_seconds(
    browsers: Browsers, stack: Stack, secret: bytes, drill: httpx.AsyncClient
) -> None:
    visit = await browsers.visit(stack.drill_url)
    page = visit.page
    await page.clock.install()
    await visit.sign_in_with_ticket(secret, Role.SUPERVISOR, "SGT-LIVE", Rank.SERGEANT)
    await visit.goto(LIST)
    await page.evaluate("window.mispersSamePage = true")  # gone if the page were reloaded
    as_of = await page.inner_text("#list-as-of")
    assert "brought up to date every 15 seconds" in as_of

    episode_id, _ = await overdue_episode(drill, stack)
    await listed(
        drill, stack, lambda eps: any(e["episode_id"] == episode_id for e in eps),
        within=30, risk="high", overdue="true", open="true",
    )  # fmt: skip
    assert await row(page, episode_id).count() == 0
    # In the index now: on the page at the next refresh (within two intervals of the clock,
    # however far into the current one the page is).
    for _ in range(2):
        await page.clock.fast_forward(REFRESH_MS)
        try:
            await row(page, episode_id).wait_for(timeout=5_000)
            break
        except PageTimeout:
            continue
    else:
        pytest.fail("the new overdue episode did not appear within two refresh intervals")
    assert await page.evaluate("window.mispersSamePage === true")  # no reload
    assert await page.inner_text("#list-as-of") != as_of  # the list says when it was read
    assert "overdue" in await row(page, episode_id).inner_text()
    await visit.check("episodes-refreshed")


async def test_without_javascript_the_list_is_refreshed_by_its_link(
    browsers: Browsers, stack: Stack, secret: bytes, drill: httpx.AsyncClient
) -> None:
    visit = await browsers.visit(stack.drill_url, java_script_enabled=False)
    page = visit.page
    await visit.sign_in_with_ticket(secret, Role.SUPERVISOR, "SGT-NOJS-LIST", Rank.SERGEANT)
    await visit.goto(LIST)
    # No promise of updates the page cannot keep without its script.
    assert "every 15 seconds" not in await page.inner_text("#list-as-of")
    episode_id, _ = await overdue_episode(drill, stack)

    async def after_refresh() -> int:
        await page.click("#refresh-list")
        await page.wait_for_load_state()
        return await page.locator(f"tr[data-episode='{episode_id}']").count()

    assert await eventually(after_refresh, lambda n: n == 1, within=30, interval=0.5) == 1
    assert "risk=high" in page.url and "overdue=yes" in page.url  # the filters kept
