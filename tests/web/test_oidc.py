"""Sign-in through a real OpenID Connect provider (oidc-provider under Node, from the npm
registry): authorization code flow with PKCE, role and rank from the ID token's claims."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
from collections.abc import AsyncIterator

import httpx
import pytest

from testkit.receivers import free_port
from tests.api.conftest import Stack, running_api
from tests.conftest import eventually
from tests.web.conftest import NODE_DIR, Browsers, Visit, node_modules

pytestmark = pytest.mark.integration

CLIENT_ID = "mispers-dashboard"
CLIENT_SECRET = "a-client-secret-for-the-browser-tests"
ACCOUNTS = {
    "INSP-4": {"force_role": "supervisor", "force_rank": "inspector"},
    "VISITOR-1": {"force_rank": "officer"},  # no Mispers role
}


@dataclasses.dataclass(frozen=True)
class Oidc:
    issuer: str
    api_url: str


@pytest.fixture
async def oidc(stack: Stack) -> AsyncIterator[Oidc]:
    node_modules()
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed to run the test's OpenID Connect provider")
    idp_port, api_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{idp_port}"
    redirect = f"http://127.0.0.1:{api_port}/ui/oidc/callback"
    provider = await asyncio.create_subprocess_exec(
        node,
        "oidc.mjs",
        str(idp_port),
        CLIENT_ID,
        CLIENT_SECRET,
        redirect,
        cwd=NODE_DIR,
        env={**os.environ, "ACCOUNTS": json.dumps(ACCOUNTS)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(timeout=2) as http:

            async def discovery() -> int:
                if provider.returncode is not None:
                    pytest.fail(f"oidc-provider exited with {provider.returncode}")
                try:
                    url = f"{issuer}/.well-known/openid-configuration"
                    return (await http.get(url)).status_code
                except httpx.TransportError:
                    return 0

            await eventually(discovery, lambda status: status == 200, within=30, interval=0.2)
        settings = dataclasses.replace(
            stack.settings,
            http_port=api_port,
            extra={
                "MISPERS_OIDC_ISSUER": issuer,
                "MISPERS_OIDC_CLIENT_ID": CLIENT_ID,
                "MISPERS_OIDC_CLIENT_SECRET": CLIENT_SECRET,
                "MISPERS_OIDC_ROLE_CLAIM": "force_role",
                "MISPERS_OIDC_RANK_CLAIM": "force_rank",
            },
        )
        async with running_api(settings) as url:
            yield Oidc(issuer=issuer, api_url=url)
    finally:
        provider.terminate()
        await provider.wait()


async def sign_in_at_provider(visit: Visit, login: str) -> None:
    page = visit.page
    await visit.goto("/ui/episodes")
    assert "/ui/signin" in page.url
    await page.click("#oidc-sign-in")
    await page.wait_for_selector("input[name=login]")
    await page.fill("input[name=login]", login)
    await page.fill("input[name=password]", "any password")
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    if await page.locator("button:has-text('Continue')").count():  # the provider's consent
        await page.click("button:has-text('Continue')")


async def test_sign_in_with_the_force_identity_provider(browsers: Browsers, oidc: Oidc) -> None:
    visit = await browsers.visit(oidc.api_url)
    await visit.goto("/ui/signin")
    await visit.check("signin-oidc")
    await sign_in_at_provider(visit, "INSP-4")
    await visit.give_purpose()
    whoami = await visit.page.inner_text(".mispers-whoami")
    assert "INSP-4" in whoami and "(supervisor, inspector)" in whoami
    cookies = {c["name"]: c for c in await visit.context.cookies()}
    session = cookies["mispers_ui"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert "mispers_oidc" not in cookies  # the flow's secrets are gone once used

    # Signing out ends the session: the pages ask to sign in again.
    await visit.page.click(".mispers-whoami button")
    await visit.page.wait_for_url("**/ui/signin?signed_out=true")
    await visit.goto("/ui/episodes")
    assert "/ui/signin" in visit.page.url


async def test_an_account_without_a_role_is_refused(browsers: Browsers, oidc: Oidc) -> None:
    visit = await browsers.visit(oidc.api_url)
    await sign_in_at_provider(visit, "VISITOR-1")
    await visit.page.wait_for_selector(".govuk-error-summary")
    assert "no Mispers role" in await visit.page.inner_text(".govuk-error-summary")
    await visit.goto("/ui/episodes")
    assert "/ui/signin" in visit.page.url
