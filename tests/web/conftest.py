"""Fixtures of the browser tests: Debian's Chromium driven by Playwright (never a downloaded
browser), the whole stack over real sockets (tests/api/conftest.py's `stack`), axe-core from the
npm registry injected into each page, and screenshots under artefacts/web/."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from mispers.api.auth import load_secret
from mispers.domain.types import Rank, Role
from mispers.web.tickets import mint_ticket
from tests.api.conftest import (  # noqa: F401  (the API tests' fixtures, reused)
    Stack,
    offline_settings,
    stack,
)
from tests.conftest import repo_root

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NODE_DIR = Path(__file__).parent / "node"
ARTEFACTS = repo_root() / "artefacts" / "web"
# The rules checked: WCAG 2.0-2.2 A and AA, and axe's best practices.
AXE_RUN = """async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}}))
  .violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                         nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))"""
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Held by one pytest process at a time: the suite runs in several, sharing the checkout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def node_modules() -> Path:
    """axe-core and oidc-provider, pinned by package-lock.json; `npm ci` on first use, by
    whichever pytest process needs them first while the others wait for it."""
    modules = NODE_DIR / "node_modules"
    with locked(NODE_DIR / "node_modules.lock"):
        if (
            not (modules / "axe-core" / "axe.min.js").exists()
            or not (modules / "oidc-provider").exists()
        ):
            npm = shutil.which("npm")
            if npm is None:
                pytest.fail("npm is needed by the browser tests (axe-core, oidc-provider)")
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--silent"],
                cwd=NODE_DIR,
                check=True,
                timeout=600,
            )
    return modules


@dataclass
class AxeLog:
    """Each page's violations by impact, written to artefacts/web/axe.json as they come.

    The suite's pytest processes share the file: each adds its pages under a lock, and a
    file left by an earlier run of the suite is started afresh."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    run: str = field(
        default_factory=lambda: os.environ.get("PYTEST_XDIST_TESTRUNUID", uuid.uuid4().hex)
    )

    def add(self, name: str, violations: list[dict[str, Any]]) -> None:
        impacts: dict[str, int] = {}
        for v in violations:
            impacts[str(v.get("impact"))] = impacts.get(str(v.get("impact")), 0) + 1
        self.results[name] = {
            "violations": len(violations),
            "by_impact": impacts,
            "rules": sorted({str(v["id"]) for v in violations}),
        }
        path = ARTEFACTS / "axe.json"
        with locked(ARTEFACTS / "axe.json.lock"):
            shared: dict[str, Any] = {}
            if path.exists():
                shared = json.loads(path.read_text())
            pages = shared.get("pages", {}) if shared.get("run") == self.run else {}
            pages.update(self.results)
            path.write_text(json.dumps({"run": self.run, "pages": pages}, indent=2, sort_keys=True))


@pytest.fixture(scope="session")
def axe_log() -> AxeLog:
    return AxeLog()


@pytest.fixture(scope="session")
def axe_source() -> str:
    return (node_modules() / "axe-core" / "axe.min.js").read_text()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():  # noqa: ASYNC240 (once per session, before anything runs)
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run does)")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True
        )
        yield chromium
        await chromium.close()


@dataclass
class Visit:
    """One person's browser: a fresh context (its own cookies) on the dashboard's API."""

    context: BrowserContext
    page: Page
    base: str
    axe_source: str
    axe_log: AxeLog
    csp_errors: list[str] = field(default_factory=list)

    async def goto(self, path: str) -> None:
        await self.page.goto(self.base + path)

    async def check(self, name: str) -> None:
        """Screenshot the page, then run axe-core on it: no serious or critical violation,
        and the page broke none of its Content-Security-Policy."""
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)
        await self.page.evaluate(self.axe_source + "\n;undefined")
        violations: list[dict[str, Any]] = await self.page.evaluate(
            AXE_RUN,
            AXE_TAGS,
        )
        self.axe_log.add(name, violations)
        bad = [v for v in violations if v["impact"] in ("serious", "critical")]
        assert not bad, f"{name}: axe found {json.dumps(bad, indent=1)}"
        assert not self.csp_errors, f"{name}: CSP violations {self.csp_errors}"

    async def sign_in_with_ticket(
        self, secret: bytes, role: Role, subject: str, rank: Rank | None = None
    ) -> None:
        ticket = mint_ticket(secret, role, subject, rank)
        await self.goto(f"/ui/signin?ticket={ticket}")
        await self.page.click("#sign-in")
        await self.give_purpose()

    async def give_purpose(self) -> None:
        await self.page.wait_for_url(re.compile(r".*/ui/purpose.*"))
        await self.page.check("input[name=purpose][value=supervision]")
        await self.page.click("#purpose-continue")
        await self.page.wait_for_url(re.compile(r".*/ui/episodes.*"))


@dataclass
class Browsers:
    browser: Browser
    axe_source: str
    axe_log: AxeLog
    contexts: list[BrowserContext] = field(default_factory=list)

    async def visit(self, base: str, **options: Any) -> Visit:
        context = await self.browser.new_context(**options)
        self.contexts.append(context)
        page = await context.new_page()
        visit = Visit(context, page, base, self.axe_source, self.axe_log)
        page.on(
            "console",
            lambda msg: (
                visit.csp_errors.append(msg.text) if "Content Security Policy" in msg.text else None
            ),
        )
        return visit


@pytest.fixture
async def browsers(browser: Browser, axe_source: str, axe_log: AxeLog) -> AsyncIterator[Browsers]:
    made = Browsers(browser, axe_source, axe_log)
    yield made
    for context in made.contexts:
        await context.close()


@pytest.fixture(scope="session")
def secret(stack: Stack) -> bytes:  # noqa: F811
    return load_secret(stack.settings)


@pytest.fixture
async def drill(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    """An HTTP client on the drill API (30 min deadlines pass in 1.5 s)."""
    async with httpx.AsyncClient(base_url=stack.drill_url, timeout=30) as client:
        yield client
