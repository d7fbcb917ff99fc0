"""The alerts page (and the "alerts for my rank" filter) read alerts as GET /v1/alerts does: the
index picks the episodes, each one's `alerts` memo comes with the listing. No episode is asked
for its state, so the page answers even when no worker is there to answer a query."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from mispers.api import create_app
from mispers.api.auth import load_secret
from mispers.config import Settings
from mispers.domain.messages import episode_workflow_id
from mispers.domain.types import Rank, Role
from mispers.engine.client import connect
from mispers.security.keyring import open_ring
from mispers.web.tickets import mint_ticket
from tests.api.conftest import DRILL_TIME_SCALE, Stack, tokens_for, unique
from tests.api.e2e import accepted, report
from tests.conftest import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def settings(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Settings]:
    made = Settings(
        data_dir=tmp_path,
        temporal_address=dev_env.client.service_client.config.target_host,
        task_queue=unique("alerts-page"),
        time_scale=DRILL_TIME_SCALE,
    )
    open_ring(made, create=True)
    yield made


async def sign_in(ui: httpx.AsyncClient, settings: Settings, role: Role, rank: Rank) -> None:
    ticket = mint_ticket(load_secret(settings), role, "SGT-MEMO", rank)
    answer = await ui.post("/ui/signin", data={"ticket": ticket})
    page = await ui.get(answer.headers["location"])
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf
    answer = await ui.post(
        "/ui/purpose", data={"csrf_token": csrf.group(1), "purpose": "supervision"}
    )
    assert answer.status_code == 303


def alert_rows(html: str) -> set[str]:
    return set(re.findall(r'data-alert="([^"]+)"', html))


async def test_alerts_are_read_from_the_index_and_memos_not_by_asking_each_episode(
    settings: Settings,
) -> None:
    from worker import build_worker

    episode_id = unique("EP-MEMO")
    stack = Stack(url="", drill_url="", settings=settings, tokens=tokens_for(settings))
    client = await connect(settings)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ui", timeout=30) as ui:
        async with build_worker(client, settings, task_queue=settings.task_queue):
            await accepted(ui, stack, report(episode_id, unique("C-MEMO"), risk="high"))

            async def sergeants_alerts() -> list[dict[str, str]]:
                answer = await ui.get(
                    "/v1/alerts",
                    params={"episode_id": episode_id, "rank": "sergeant"},
                    headers=stack.headers(Role.SUPERVISOR),
                )
                found: list[dict[str, str]] = answer.json()["alerts"]
                return found

            await eventually(sergeants_alerts, bool, within=60, interval=0.3)
        # The worker has stopped: a query to the episode would wait for one that never comes.
        try:
            expected = {a["alert_id"] for a in await sergeants_alerts() if a["state"] != "resolved"}
            assert expected
            await sign_in(ui, settings, Role.SUPERVISOR, Rank.SERGEANT)
            page = await ui.get("/ui/alerts")
            assert page.status_code == 200
            assert "Alerts for sergeants" in page.text
            shown = {a for a in alert_rows(page.text) if a.startswith(f"{episode_id}:")}
            assert shown == expected
            everyone = await ui.get("/ui/alerts", params={"rank": "all"})
            assert expected <= alert_rows(everyone.text)
            mine = await ui.get("/ui/episodes", params={"mine": "yes"})
            assert mine.status_code == 200
            assert f'data-episode="{episode_id}"' in mine.text
            # An auditor handles no alerts, on the page as in the API.
            async with httpx.AsyncClient(transport=transport, base_url="http://ui") as other:
                await sign_in(other, settings, Role.AUDITOR, Rank.OFFICER)
                assert (await other.get("/ui/alerts")).status_code == 403
        finally:
            await client.get_workflow_handle(episode_workflow_id(episode_id)).terminate()
