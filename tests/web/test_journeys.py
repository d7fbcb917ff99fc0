"""The dashboard in a real browser (Debian Chromium): the journeys of a sergeant, an officer and
an auditor, against the whole stack at drill speed. Every page is screenshotted and checked
with axe-core (artefacts/web/)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Page, Route

from mispers.domain.types import Rank, Role
from mispers.web.tickets import mint_ticket
from tests.api.conftest import Stack, unique
from tests.api.e2e import accepted, event, now, report, state
from tests.conftest import eventually
from tests.web.conftest import ARTEFACTS, Browsers
from workflows.episode import MEMO_UNRESOLVED_PER_OBLIGATION

pytestmark = pytest.mark.integration

MISSING_CONTACT = "social_services_notified_missing"


async def overdue_episode(drill: httpx.AsyncClient, stack: Stack) -> tuple[str, str]:
    """A high-risk episode whose social-services notification is overdue and alerted."""
    episode_id, child_ref = unique("EP-UI"), unique("C-UI")
    await accepted(drill, stack, report(episode_id, child_ref, risk="high"))

    def ready(s: dict[str, Any]) -> bool:
        late = [o for o in s["obligations"] if o["kind"] == MISSING_CONTACT]
        return bool(late) and late[0]["status"] == "overdue" and bool(s["alerts"])

    await eventually(lambda: state(drill, stack, episode_id), ready, within=60, interval=0.3)
    return episode_id, child_ref


async def too_wide(page: Page, width: int) -> list[str]:
    """The innermost elements reaching past `width` (what to fix when a page scrolls sideways)."""
    found: list[str] = await page.evaluate(
        """(width) => [...document.querySelectorAll('body *')]
             .filter(e => e.getBoundingClientRect().right > width + 1 && !e.children.length)
             .slice(0, 8).map(e => `${e.tagName}.${e.className} ${e.textContent.slice(0, 40)}`)""",
        width,
    )
    return found


def row_status(kind: str) -> str:
    return f"#obligations-table tr[data-kind={kind}] [data-status]"


async def test_signed_out_visitor_is_sent_to_sign_in(browsers: Browsers, stack: Stack) -> None:
    visit = await browsers.visit(stack.drill_url)
    for path in (
        "/ui/episodes",
        "/ui/episodes/EP-1",
        "/ui/children/C-1",
        "/ui/alerts",
        "/ui/audit",
    ):
        await visit.goto(path)
        assert re.search(r"/ui/signin\?next=", visit.page.url), path
    assert await visit.page.locator("h1").inner_text() == "Sign in to Mispers"
    await visit.check("signin")


async def test_forged_and_reused_tickets_are_refused(
    browsers: Browsers, stack: Stack, secret: bytes
) -> None:
    forged = mint_ticket(b"x" * 48, Role.SUPERVISOR, "SGT-FORGER")
    visit = await browsers.visit(stack.drill_url)
    await visit.goto(f"/ui/signin?ticket={forged}")
    assert "not one Mispers issued" in await visit.page.content()
    await visit.check("signin-forged")

    ticket = mint_ticket(secret, Role.SUPERVISOR, "SGT-ONCE")
    first = await browsers.visit(stack.drill_url)
    await first.goto(f"/ui/signin?ticket={ticket}")
    await first.check("signin-ticket")
    await first.page.click("#sign-in")
    await first.page.wait_for_url("**/ui/purpose**")
    await first.check("purpose")
    await first.give_purpose()
    second = await browsers.visit(stack.drill_url)
    await second.goto(f"/ui/signin?ticket={ticket}")
    assert "already been used" in await second.page.content()
    await second.goto("/ui/episodes")
    assert "/ui/signin" in second.page.url


async def test_supervisor_journey(
    browsers: Browsers, stack: Stack, secret: bytes, drill: httpx.AsyncClient
) -> None:
    episode_id, child_ref = await overdue_episode(drill, stack)
    visit = await browsers.visit(stack.drill_url)
    page = visit.page
    await visit.goto("/ui/episodes")
    assert "/ui/signin" in page.url
    await visit.sign_in_with_ticket(secret, Role.SUPERVISOR, "SGT-7", Rank.SERGEANT)
    assert "purpose: Supervising open episodes" in await page.inner_text(".mispers-whoami")

    # The overdue high-risk episode is at the top: overdue rows first, ours among them.
    async def table_rows() -> list[str]:
        await page.reload()
        ids: list[str] = await page.locator("#episodes-table tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.episode)"
        )
        return ids

    rows = await eventually(table_rows, lambda ids: episode_id in ids, within=30, interval=0.5)
    first = page.locator("#episodes-table tbody tr").first
    assert "overdue" in await first.inner_text()
    assert "High" in await first.inner_text()
    ours = page.locator(f"tr[data-episode='{episode_id}']")
    assert "overdue" in await ours.inner_text()
    overdue_rows = [r for r in rows[: rows.index(episode_id) + 1]]
    assert len(overdue_rows) >= 1
    assert int(await page.inner_text("#count-overdue")) >= 1
    assert int(await page.inner_text("#count-high")) >= 1
    await visit.check("episodes")
    # The page's script runs under the CSP: GOV.UK Frontend starts, the countdowns tick.
    assert await page.evaluate("document.body.classList.contains('govuk-frontend-supported')")
    countdown = await page.locator("[data-deadline]").first.element_handle()
    await countdown.evaluate("el => { el.textContent = 'not ticking' }")
    await page.wait_for_function("el => el.textContent !== 'not ticking'", arg=countdown)
    assert re.fullmatch(r"(in|overdue by) \d+ .+", await countdown.inner_text())

    # "Alerts for my rank": the episode has alerts raised to sergeants, still listed for them
    # after the top rank has been re-alerted more often than the memo keeps of one obligation.
    def realerted(s: dict[str, Any]) -> bool:
        levels = [
            a["escalation_level"] for a in s["alerts"] if a["obligation_id"] == MISSING_CONTACT
        ]
        return max(levels, default=0) > MEMO_UNRESOLVED_PER_OBLIGATION + 1

    await eventually(lambda: state(drill, stack, episode_id), realerted, within=60, interval=0.5)

    async def mine() -> int:
        await visit.goto("/ui/episodes?mine=yes")
        return await page.locator(f"tr[data-episode='{episode_id}']").count()

    await eventually(mine, lambda count: count == 1, within=30, interval=0.5)
    await visit.goto("/ui/episodes")

    # Open it.
    await page.click(f"tr[data-episode='{episode_id}'] a[href='/ui/episodes/{episode_id}']")
    await page.wait_for_url(f"**/ui/episodes/{episode_id}")
    assert await page.inner_text(row_status(MISSING_CONTACT)) == "Overdue"
    assert "High" in await page.inner_text("#risk-grade")
    await visit.check("episode")

    # Acknowledge its alert.
    form = page.locator("#alerts-table form").first
    alert_id = await form.locator("input[name=alert_id]").get_attribute("value")
    await form.locator("button").click()
    await page.wait_for_selector("#done-banner")
    assert "Alert acknowledged" in await page.inner_text("#done-banner")
    assert (
        await page.get_attribute(
            f"tr[data-alert='{alert_id}'] [data-alert-state]", "data-alert-state"
        )
        == "acknowledged"
    )

    # Record the missing contact: the obligation turns met.
    await page.fill("#contact-authority", "Lambeth")
    await page.fill("#contact-name", "Duty social worker")
    await page.select_option("#contact-purpose", "missing_notification")
    await page.fill("#contact-summary", "Told of the missing episode")
    await page.click("#record-contact")
    await page.wait_for_selector("#done-banner")
    assert await page.inner_text(row_status(MISSING_CONTACT)) == "Met"
    assert "Duty social worker" in await page.inner_text("#communications-table")
    await visit.check("episode-after-contact")

    # A risk grade below the floor is refused, naming the rule.
    await page.check("input[name=level][value=very_low]")
    await page.fill("#risk-rationale", "Seen by a neighbour")
    await page.click("#record-risk")
    summary = page.locator(".govuk-error-summary")
    await summary.wait_for()
    assert "rule: below_floor" in await summary.inner_text()
    await visit.check("episode-refused-floor")

    # Found; closing with open obligations is refused, naming the rule.
    found = {"found_at": now().isoformat()}
    await accepted(drill, stack, event("child.found", episode_id, found))
    await visit.goto(f"/ui/episodes/{episode_id}")
    await page.fill("#closure-request-rationale", "Child home and well")
    await page.click("#request-closure")
    await summary.wait_for()
    text = await summary.inner_text()
    assert "There is a problem" in text and "rule: open_obligations" in text
    await visit.check("episode-refused-closure")

    # Approve closure with a waiver for each open obligation (new ones may fall due at drill
    # speed between reading the form and sending it: the refusal then names them; go again).
    async def approve() -> str:
        await visit.goto(f"/ui/episodes/{episode_id}")
        if await page.locator("#closure-approval").count() == 0:
            return await page.inner_text("#episode-status")
        await page.fill("#closure-approval-rationale", "Home, safe and well; partners informed")
        for waiver in await page.locator("textarea[name^='waiver:']").all():
            await waiver.fill("Covered at the strategy discussion")
        await page.click("#approve-closure")
        await page.wait_for_load_state()
        return await page.inner_text("#episode-status")

    status = await eventually(approve, lambda s: s == "Closed", within=30, interval=0.2)
    assert status == "Closed"
    assert await page.locator("#contact").count() == 0  # a closed episode takes no decisions
    await visit.check("episode-closed")

    # The child's page and the alerts page.
    await visit.goto(f"/ui/children/{child_ref}")
    assert episode_id in await page.inner_text("#child-episodes")
    await visit.check("child")
    await visit.goto("/ui/alerts?rank=all")
    await visit.check("alerts")

    # Acknowledge from the alerts page, on another open episode's alert.
    other, _ = await overdue_episode(drill, stack)
    await visit.goto("/ui/alerts")
    row = page.locator(f"#alerts-table tr:has(a[href='/ui/episodes/{other}'])").first
    alert = await row.get_attribute("data-alert")
    await row.locator("button").click()
    await page.wait_for_selector("#done-banner")
    await visit.goto("/ui/alerts?rank=all")
    assert (
        await page.get_attribute(f"tr[data-alert='{alert}'] [data-alert-state]", "data-alert-state")
        == "acknowledged"
    )


async def test_officer_sees_no_approval_form(
    browsers: Browsers, stack: Stack, secret: bytes, drill: httpx.AsyncClient
) -> None:
    episode_id, _ = await overdue_episode(drill, stack)
    visit = await browsers.visit(stack.drill_url)
    await visit.sign_in_with_ticket(secret, Role.OFFICER, "PC-101")
    await visit.goto(f"/ui/episodes/{episode_id}")
    page = visit.page
    assert await page.locator("#contact").count() == 1
    assert await page.locator("#closure-approval").count() == 0
    await visit.check("episode-officer")
    # Posting the approval anyway is the API's refusal, not the page's.
    csrf = await page.get_attribute("#contact input[name=csrf_token]", "value")
    answer = await page.request.post(
        f"{stack.drill_url}/ui/episodes/{episode_id}/closure/approve",
        form={"csrf_token": csrf or "", "rationale": "x", "event_id": "ui-officer-try"},
    )
    assert answer.status == 403
    assert "supervisor decision" in await answer.text()
    # A form sent twice (a double click, the back button) records its event once.
    enquiry: dict[str, str | float | bool] = {
        "csrf_token": csrf or "",
        "event_id": await page.get_attribute("#enquiry input[name=event_id]", "value") or "",
        "kind": "home_search",
        "outcome": "Not at home",
    }
    url = f"{stack.drill_url}/ui/episodes/{episode_id}/enquiry"
    assert "done=enquiry" in (await page.request.post(url, form=enquiry)).url
    assert "done=duplicate" in (await page.request.post(url, form=enquiry)).url
    recorded = await state(drill, stack, episode_id)
    assert sum(t["type"] == "mispers.enquiry.recorded" for t in recorded["timeline"]) == 1
    # And a post without the session's CSRF token changes nothing.
    forged = await page.request.post(
        f"{stack.drill_url}/ui/episodes/{episode_id}/enquiry",
        form={"csrf_token": "wrong", "kind": "home_search", "outcome": "x"},
    )
    assert forged.status == 403


async def test_auditor_reads_who_consulted(
    browsers: Browsers, stack: Stack, secret: bytes, drill: httpx.AsyncClient
) -> None:
    episode_id, child_ref = await overdue_episode(drill, stack)
    sergeant = await browsers.visit(stack.drill_url)
    await sergeant.sign_in_with_ticket(secret, Role.SUPERVISOR, "SGT-AUD")
    await sergeant.goto(f"/ui/episodes/{episode_id}")
    auditor = await browsers.visit(stack.drill_url)
    await auditor.sign_in_with_ticket(secret, Role.AUDITOR, "AUD-1")
    await auditor.goto(f"/ui/audit?child_ref={child_ref}")
    table = await auditor.page.inner_text("#audit-table")
    assert "SGT-AUD" in table and "Supervising open episodes" in table
    await auditor.check("audit")
    await auditor.goto(f"/ui/episodes/{episode_id}")
    assert await auditor.page.locator("form[method=post]").count() == 1  # sign-out only
    await sergeant.goto("/ui/audit")
    assert await sergeant.page.locator("h1").inner_text() == "The token's role may not do this"
    await sergeant.check("error-403")


async def test_small_screens_zoom_and_keyboard(
    browsers: Browsers, stack: Stack, secret: bytes, drill: httpx.AsyncClient
) -> None:
    episode_id, _ = await overdue_episode(drill, stack)
    narrow = await browsers.visit(stack.drill_url, viewport={"width": 320, "height": 900})
    await narrow.sign_in_with_ticket(secret, Role.SUPERVISOR, "SGT-320")
    for path, name in (
        ("/ui/episodes", "episodes-320px"),
        (f"/ui/episodes/{episode_id}", "episode-320px"),
    ):
        await narrow.goto(path)
        width = await narrow.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 320, f"{path} is {width}px wide: {await too_wide(narrow.page, 320)}"
        await narrow.check(name)
    # 200 % zoom of a 1280px window: 640 CSS pixels at twice the density.
    zoomed = await browsers.visit(
        stack.drill_url, viewport={"width": 640, "height": 900}, device_scale_factor=2
    )
    await zoomed.sign_in_with_ticket(secret, Role.SUPERVISOR, "SGT-ZOOM")
    await zoomed.goto(f"/ui/episodes/{episode_id}")
    assert await zoomed.page.evaluate("document.documentElement.scrollWidth") <= 640
    await zoomed.check("episode-200pc")

    # Keyboard alone: the skip link first, then Tab to the episode and Enter opens it.
    visit = await browsers.visit(stack.drill_url)
    await visit.sign_in_with_ticket(secret, Role.SUPERVISOR, "SGT-KEYS")
    page = visit.page
    await page.keyboard.press("Tab")
    assert (
        await page.evaluate("document.activeElement.textContent.trim()") == "Skip to main content"
    )
    target = f"/ui/episodes/{episode_id}"
    for _ in range(200):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.getAttribute('href')") == target:
            break
    else:
        pytest.fail("the episode's link cannot be reached with Tab")
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"**{target}")


async def test_api_docs_render_with_nothing_from_outside(browsers: Browsers, stack: Stack) -> None:
    """/docs on a closed network: Swagger UI from Mispers' own assets, no request elsewhere."""
    visit = await browsers.visit(stack.url)
    outside: list[str] = []

    async def only_here(route: Route) -> None:
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await visit.context.route("**/*", only_here)
    await visit.goto("/docs")
    title = visit.page.locator(".swagger-ui .info .title")
    await title.wait_for()
    assert "Mispers" in await title.inner_text()
    assert await visit.page.locator(".opblock").count() > 5  # the operations are listed
    assert outside == []
    await visit.page.screenshot(path=str(ARTEFACTS / "api-docs.png"))


async def test_everything_works_without_javascript(
    browsers: Browsers, stack: Stack, secret: bytes, drill: httpx.AsyncClient
) -> None:
    episode_id, _ = await overdue_episode(drill, stack)
    visit = await browsers.visit(stack.drill_url, java_script_enabled=False)
    await visit.sign_in_with_ticket(secret, Role.OFFICER, "PC-NOJS")
    page = visit.page
    assert await page.locator("body.js-enabled").count() == 0
    await page.select_option("#filter-risk", "high")
    await page.click("#apply-filters")
    assert "risk=high" in page.url
    await visit.goto(f"/ui/episodes/{episode_id}")
    assert await page.inner_text(row_status(MISSING_CONTACT)) == "Overdue"
    await page.select_option("#enquiry-kind", "home_search")
    await page.fill("#enquiry-outcome", "Not at home")
    await page.click("#record-enquiry")
    await page.wait_for_selector("#done-banner")
    assert "Enquiry recorded" in await page.inner_text("#done-banner")
    assert "Enquiry recorded" in await page.inner_text("#timeline-table")
