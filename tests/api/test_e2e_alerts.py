"""Alerts end to end over real sockets: dev server, worker with a rota and a webhook, the API at a
drill time scale. Listing, acknowledging through the API and through the signed link (GET shows a
page, only POST acknowledges; forged, expired and replayed links are refused), the lapse of an
acknowledgement re-escalating, and resolution when the work is done."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import WorkflowEnvironment

from mispers.api.auth import load_secret, mint_token
from mispers.config import Settings
from mispers.domain.types import Rank, Role
from mispers.engine.client import connect
from mispers.security import ack_links
from mispers.security.keyring import open_ring
from testkit.receivers import WebhookReceiver, free_port, webhook_receiver
from tests.api.conftest import running_api, unique
from tests.api.e2e import event, report
from tests.conftest import eventually, repo_root, run_command

pytestmark = pytest.mark.integration

# 1 h of systems checks becomes 3 s; the 2 h acknowledgement timeout at medium becomes 6 s.
SCALE = 1200.0
ROTA = """rank,person_id,email,days,start,end
sergeant,SGT-ON,sgt.on@force.test,*,00:00,00:00
inspector,INSP-ON,insp.on@force.test,*,00:00,00:00
"""
BROWSER = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Mispers-test", "accept": "text/html"}


@dataclasses.dataclass
class AlertStack:
    url: str
    settings: Settings
    webhook: WebhookReceiver

    def headers(self, role: Role, subject: str) -> dict[str, str]:
        token = mint_token(load_secret(self.settings), role, subject)
        return {"authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def alert_stack(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AlertStack]:
    from worker import build_worker

    data = tmp_path_factory.mktemp("alerts-e2e")
    rota = data / "rota.csv"
    rota.write_text(ROTA)
    port = free_port()
    with webhook_receiver() as hook:
        settings = Settings(
            data_dir=data,
            http_port=port,
            temporal_address=dev_env.client.service_client.config.target_host,
            task_queue=f"alerts-e2e-{uuid.uuid4().hex[:8]}",
            time_scale=SCALE,
            alert_webhook_url=hook.url,
            rota=rota,
            public_url=f"http://127.0.0.1:{port}",
        )
        open_ring(settings, create=True)
        client = await connect(settings)
        async with build_worker(client, settings), running_api(settings) as url:
            yield AlertStack(url=url, settings=settings, webhook=hook)


async def post_event(http: httpx.AsyncClient, s: AlertStack, document: dict[str, Any]) -> None:
    response = await http.post(
        "/v1/events",
        json=document,
        headers={
            "content-type": "application/cloudevents+json",
            **s.headers(Role.SUPERVISOR, "SGT-7"),
        },
    )
    assert response.status_code == 202, response.text


def bodies(s: AlertStack, alert_id: str) -> list[dict[str, Any]]:
    return [b for b in s.webhook.bodies() if b["alert_id"] == alert_id]


async def test_alerts_listed_acknowledged_by_link_and_api_re_escalated_and_resolved(
    alert_stack: AlertStack,
) -> None:
    s = alert_stack
    episode = unique("AL")
    l1, l2 = (f"{episode}:systems_checks:L{n}" for n in (1, 2))
    officer = s.headers(Role.OFFICER, "PC-12")
    async with httpx.AsyncClient(base_url=s.url, timeout=30) as http:
        await post_event(http, s, report(episode, unique("CH")))
        first = await eventually(lambda: bodies(s, l1), bool, within=30)
        page = first[0]
        assert page["transition"] == "triggered" and page["dedup_key"] == l1
        assert page["recipient"] == {"person_id": "SGT-ON", "email": "sgt.on@force.test"}
        ack_url = page["ack_url"]
        assert ack_url.startswith(f"{s.url}/ack?token=")

        # The listing: filters by state, rank, episode and recipient, from visibility.
        async def listing(**params: str) -> list[dict[str, Any]]:
            answer = await http.get("/v1/alerts", params=params, headers=officer)
            assert answer.status_code == 200, answer.text
            alerts: list[dict[str, Any]] = answer.json()["alerts"]
            return alerts

        mine = await eventually(
            lambda: listing(state="triggered", rank="sergeant", recipient="SGT-ON"),
            lambda alerts: any(a["alert_id"] == l1 for a in alerts),
        )
        assert next(a for a in mine if a["alert_id"] == l1)["episode_id"] == episode
        assert not [a for a in await listing(rank="inspector", episode_id=episode)]
        auditor = s.headers(Role.AUDITOR, "AUD-1")
        assert (await http.get("/v1/alerts", headers=auditor)).status_code == 403

        async with httpx.AsyncClient(headers=BROWSER, follow_redirects=True, timeout=30) as web:
            # GET shows a page with one button and acknowledges nothing.
            shown = await web.get(ack_url)
            assert shown.status_code == 200 and shown.headers["cache-control"] == "no-store"
            assert shown.text.count("<button") == 1 and 'method="post"' in shown.text
            state = (await listing(episode_id=episode))[-1]
            assert state["alert_id"] == l1 and state["state"] == "triggered"

            token = re.search(r'name="token" value="([^"]+)"', shown.text)
            assert token is not None
            raw = token.group(1)
            body, mac = raw.split(".")
            forged = await web.post(f"{s.url}/ack", data={"token": f"{body}.{mac[:-3]}xyz"})
            assert forged.status_code == 403 and "not issued by this service" in forged.text
            past = ack_links.sign(
                load_secret(s.settings),
                ack_links.AckLink(
                    l1, "SGT-ON", Rank.SERGEANT, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
                ),
            )
            expired = await web.get(f"{s.url}/ack", params={"token": past})
            assert expired.status_code == 403 and "expired" in expired.text

            taken = await web.post(f"{s.url}/ack", data={"token": raw})
            assert taken.status_code == 200 and "Acknowledged" in taken.text, taken.text
            assert "paused until" in taken.text
            again = await web.post(f"{s.url}/ack", data={"token": raw})
            assert again.status_code == 200 and "Already acknowledged" in again.text

        held = await eventually(
            lambda: listing(state="acknowledged", episode_id=episode),
            lambda alerts: any(a["alert_id"] == l1 for a in alerts),
        )
        ack = next(a for a in held if a["alert_id"] == l1)
        assert ack["acknowledged_by"] == "SGT-ON"
        expires = dt.datetime.fromisoformat(ack["ack_expires_at"])
        timeline = (await http.get(f"/v1/episodes/{episode}", headers=officer)).json()["timeline"]
        assert sum(e["type"] == "mispers.alert.acknowledged" for e in timeline) == 1

        # Nobody acts: the acknowledgement lapses, SGT-ON is paged again, the inspector paged.
        up = await eventually(lambda: bodies(s, l2), bool, within=30, interval=0.05)
        repaged = [b for b in bodies(s, l1) if b.get("reason") == "ack_timeout"]
        assert repaged and repaged[0]["recipient"]["person_id"] == "SGT-ON"
        assert up[0]["rank"] == "inspector" and up[0]["recipient"]["person_id"] == "INSP-ON"
        arrivals = s.webhook.arrivals()
        repaged_at = min(at for at, b in arrivals if b["alert_id"] == l1 and b.get("reason"))
        escalated_at = min(at for at, b in arrivals if b["alert_id"] == l2)
        raised_late = (dt.datetime.fromisoformat(up[0]["raised_at"]) - expires).total_seconds()
        repaged_late = repaged_at - expires.timestamp()
        escalated_late = escalated_at - expires.timestamp()
        print(
            f"\nafter the acknowledgement lapsed: the next rank's alert raised {raised_late:.3f} s "
            f"after the expiry; at the webhook the re-triggered alert {repaged_late:.3f} s and "
            f"the next rank's {escalated_late:.3f} s after"
        )
        # due at the expiry, not an escalation interval later
        assert 0 <= raised_late <= escalated_late < 5.0 and 0 <= repaged_late < 5.0

        # A constable's acknowledgement of the inspector's page: recorded, pauses nothing.
        low = await http.post(f"/v1/alerts/{l2}/ack", json={"note": "on my way"}, headers=officer)
        assert low.status_code == 200, low.text
        assert low.json()["status"] == "accepted" and not low.json()["ack_pauses_escalation"]
        assert "does not pause escalation" in low.json()["message"]
        twice = await http.post(f"/v1/alerts/{l2}/ack", headers=officer)
        assert twice.status_code == 200 and twice.json()["status"] == "duplicate"
        cli_env = {**os.environ, "MISPERS_DATA_DIR": str(s.settings.data_dir), "COLUMNS": "200"}
        cli = [str(repo_root() / ".venv/bin/mispers"), "alerts"]
        code, out = await run_command(
            *cli, "list", "--url", s.url, "--episode", episode, "--rank", "inspector", env=cli_env
        )
        assert code == 0, out
        assert l2 in out and "INSP-ON" in out and "PC-12" in out and l1 not in out
        code, out = await run_command(
            *cli, "ack", l2, "--url", s.url, "--subject", "PC-12", "--role", "officer", env=cli_env
        )
        assert code == 0 and f"{l2}: duplicate" in out, out
        code, out = await run_command(*cli, "ack", f"{episode}:x:L1", "--url", s.url, env=cli_env)
        assert code == 2 and "HTTP 404" in out, out
        unknown = await http.post(f"/v1/alerts/{episode}:systems_checks:L99/ack", headers=officer)
        assert unknown.status_code == 404
        someone_else = event("alert.acknowledged", episode, {"alert_id": l2, "by": "INSP-ON"})
        refused = await http.post(
            "/v1/events",
            json=someone_else,
            headers={"content-type": "application/cloudevents+json", **officer},
        )
        assert refused.status_code == 403 and "token's subject" in refused.json()["detail"]

        # The work is done: every alert of the obligation is resolved, and stays so.
        await post_event(http, s, event("enquiry.recorded", episode))
        await eventually(
            lambda: listing(episode_id=episode, state="resolved"),
            lambda alerts: {a["alert_id"] for a in alerts} >= {l1, l2},
        )
        # Paged, newest first; a page token we did not hand out is refused.
        everything = await listing(episode_id=episode, state="resolved")
        raised = [a["raised_at"] for a in everything]
        assert raised == sorted(raised, reverse=True) and everything[-1]["alert_id"] == l1
        pages: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"episode_id": episode, "state": "resolved", "page_size": 1}
            if cursor:
                params["page_token"] = cursor
            answer = (await http.get("/v1/alerts", params=params, headers=officer)).json()
            pages += [a["alert_id"] for a in answer["alerts"]]
            cursor = answer["next_page_token"]
            if cursor is None:
                break
        assert pages == [a["alert_id"] for a in everything]
        bad = await http.get("/v1/alerts", params={"page_token": "1.abc"}, headers=officer)
        assert bad.status_code == 422

        late = await http.post(f"/v1/alerts/{l1}/ack", headers=s.headers(Role.SUPERVISOR, "S-1"))
        assert late.status_code == 409
        assert late.json()["refusal"]["details"]["state"] == "resolved"
        async with httpx.AsyncClient(headers=BROWSER, timeout=30) as web:
            gone = await web.get(ack_url)
            assert gone.status_code == 409 and "resolved" in gone.text
        await eventually(
            lambda: [b["transition"] for b in bodies(s, l1)],
            lambda steps: steps[-1] == "resolved" and "acknowledged" in steps,
        )
        # The timeline: each step an alert took by itself once, as Mispers' entry; each
        # acknowledgement once, as the event it came as.
        answer = await http.get(f"/v1/episodes/{episode}", headers=officer)
        timeline = answer.json()["timeline"]
        ids = [e["event_id"] for e in timeline]
        assert len(ids) == len(set(ids))
        own = [
            (e["type"], e["event_id"])
            for e in timeline
            if e["source"] == "mispers" and e["data"]["alert_id"] in (l1, l2)
        ]
        assert sorted(own) == sorted(
            [
                ("mispers.alert.triggered", f"{l1}:triggered"),
                ("mispers.alert.retriggered", f"{l1}:retriggered:1"),
                ("mispers.alert.triggered", f"{l2}:triggered"),
                ("mispers.alert.resolved", f"{l1}:resolved"),
                ("mispers.alert.resolved", f"{l2}:resolved"),
            ]
        )
        acks = [e for e in timeline if e["type"] == "mispers.alert.acknowledged"]
        assert [e["data"]["alert_id"] for e in acks] == [l1, l2]  # the link's, the constable's
        retriggered = next(e for e in timeline if e["event_id"] == f"{l1}:retriggered:1")
        assert retriggered["actor"] == "mispers" and retriggered["data"]["recipient"] == "SGT-ON"
        started = time.monotonic()
        await listing(state="resolved")
        print(f"GET /v1/alerts?state=resolved answered in {time.monotonic() - started:.3f} s")

        # The measures (the worker runs in this process, so its series are on this scrape).
        scrape = await http.get("/metrics", headers=officer)
        assert scrape.status_code == 200
        figures = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(scrape.text)
            for sample in family.samples
        }
        sergeant = (("rank", "sergeant"),)
        assert figures[("mispers_alert_time_to_ack_seconds_count", sergeant)] >= 1
        assert figures[("mispers_alert_time_to_ack_seconds_count", (("rank", "inspector"),))] >= 1
        assert figures[("mispers_alert_ack_timeouts_total", sergeant)] >= 1
        assert figures[("mispers_alerts", (("state", "resolved"),))] >= 2
        assert ("mispers_alerts", (("state", "triggered"),)) in figures
