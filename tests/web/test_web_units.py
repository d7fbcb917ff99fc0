"""The dashboard's pure parts and its HTTP answers that need no engine: session cookie, tickets,
settings, orderings, security headers, CSRF and the offline assets."""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from pathlib import Path

import httpx
import pytest

from mispers.api import create_app
from mispers.api.auth import load_secret
from mispers.config import ConfigError, Settings
from mispers.domain.state import Alert, EpisodeSummary
from mispers.domain.types import AlertState, EpisodeStatus, ObligationKind, Rank, RiskLevel, Role
from mispers.security.audit import AuditRecord, JsonlAuditSink
from mispers.web import views
from mispers.web.config import web_settings
from mispers.web.identity import user_for
from mispers.web.session import COOKIE, Session, seal, unseal
from mispers.web.tickets import TicketError, mint_ticket, peek_ticket, redeem_ticket
from tests.api.conftest import tokens_for
from tests.conftest import run_command

SECRET = b"s" * 48
NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
IDLE = dt.timedelta(minutes=30)


def test_a_session_survives_its_cookie_and_nothing_else() -> None:
    session = Session.start(user_for("SGT-7", Role.SUPERVISOR, None, "ticket"), NOW)
    cookie = seal(SECRET, session)
    assert unseal(SECRET, cookie, NOW + dt.timedelta(minutes=29), IDLE) == session
    assert session.user.rank is Rank.SERGEANT  # a supervisor is at least a sergeant
    assert unseal(b"t" * 48, cookie, NOW, IDLE) is None  # another service's secret
    body, _, mac = cookie.rpartition(".")
    tampered = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + mac
    assert unseal(SECRET, tampered, NOW, IDLE) is None
    assert unseal(SECRET, "garbage", NOW, IDLE) is None


def test_a_session_idle_too_long_is_over_and_a_touch_extends_it() -> None:
    session = Session.start(user_for("PC-1", Role.OFFICER, None, "ticket"), NOW)
    assert unseal(SECRET, seal(SECRET, session), NOW + IDLE + dt.timedelta(seconds=1), IDLE) is None
    later = session.touched(NOW + dt.timedelta(minutes=20))
    assert unseal(SECRET, seal(SECRET, later), NOW + dt.timedelta(minutes=45), IDLE) is not None


def test_csrf_token_must_match() -> None:
    session = Session.start(user_for("PC-1", Role.OFFICER, None, "ticket"), NOW)
    assert session.csrf_ok(session.csrf)
    assert not session.csrf_ok("")
    assert not session.csrf_ok(session.csrf + "x")


def test_tickets_sign_in_once(tmp_path: Path) -> None:
    ticket = mint_ticket(SECRET, Role.SUPERVISOR, "SGT-7", Rank.INSPECTOR)
    assert peek_ticket(SECRET, ticket, tmp_path).subject == "SGT-7"
    user = redeem_ticket(SECRET, ticket, tmp_path)
    assert (user.subject, user.role, user.rank) == ("SGT-7", Role.SUPERVISOR, Rank.INSPECTOR)
    with pytest.raises(TicketError, match="already been used"):
        redeem_ticket(SECRET, ticket, tmp_path)
    with pytest.raises(TicketError, match="already been used"):
        peek_ticket(SECRET, ticket, tmp_path)


def test_forged_and_expired_tickets_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TicketError, match="not one Mispers issued"):
        redeem_ticket(SECRET, mint_ticket(b"x" * 48, Role.SUPERVISOR, "SGT-7"), tmp_path)
    with pytest.raises(TicketError, match="not one Mispers issued"):
        redeem_ticket(SECRET, "not-a-ticket", tmp_path)
    old = mint_ticket(
        SECRET, Role.OFFICER, "PC-1", now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    )
    with pytest.raises(TicketError, match="expired"):
        redeem_ticket(SECRET, old, tmp_path)
    with pytest.raises(ValueError, match="at most"):
        mint_ticket(SECRET, Role.OFFICER, "PC-1", ttl=dt.timedelta(hours=1))


def test_web_settings() -> None:
    settings = Settings(http_port=8123)
    assert web_settings(settings).public_url == "http://127.0.0.1:8123"
    assert not web_settings(settings).secure_cookies
    secure = web_settings(settings, {"MISPERS_PUBLIC_URL": "https://mispers.force.example/"})
    assert secure.secure_cookies and secure.public_url == "https://mispers.force.example"
    oidc = web_settings(
        settings, {"MISPERS_OIDC_ISSUER": "https://idp.example", "MISPERS_OIDC_CLIENT_ID": "c"}
    ).oidc
    assert oidc is not None and (oidc.role_claim, oidc.rank_claim) == ("role", "rank")
    for bad in (
        {"MISPERS_OIDC_ISSUER": "https://idp.example"},
        {"MISPERS_OIDC_ISSUER": "idp.example", "MISPERS_OIDC_CLIENT_ID": "c"},
        {"MISPERS_UI_IDLE_MINUTES": "0"},
        {"MISPERS_UI_TICKETS": "maybe"},
        {"MISPERS_PUBLIC_URL": "mispers.example"},
    ):
        with pytest.raises(ConfigError, match="MISPERS_"):
            web_settings(settings, bad)


def summary(episode_id: str, risk: RiskLevel, overdue: int, due_in: float | None) -> EpisodeSummary:
    return EpisodeSummary(
        episode_id=episode_id,
        status=EpisodeStatus.MISSING,
        risk_level=risk,
        child_ref=None,
        overdue_count=overdue,
        next_deadline=NOW + dt.timedelta(minutes=due_in) if due_in is not None else None,
    )


def test_overdue_first_by_risk_then_by_next_deadline() -> None:
    ordered = views.by_urgency(
        [
            summary("soon", RiskLevel.LOW, 0, 5),
            summary("none", RiskLevel.HIGH, 0, None),
            summary("late-medium", RiskLevel.MEDIUM, 1, 50),
            summary("late-high", RiskLevel.HIGH, 1, 90),
            summary("very-late", RiskLevel.LOW, 3, 10),
            summary("later", RiskLevel.HIGH, 0, 60),
        ]
    )
    assert [e.episode_id for e in ordered] == [
        "late-high", "late-medium", "very-late", "soon", "later", "none",
    ]  # fmt: skip


def test_countdown_words() -> None:
    assert views.countdown(NOW + dt.timedelta(minutes=65), NOW) == "in 1 h 5 min"
    assert views.countdown(NOW - dt.timedelta(minutes=3), NOW) == "overdue by 3 min"
    assert views.countdown(NOW + dt.timedelta(days=2, hours=3), NOW) == "in 2 d 3 h"
    assert views.countdown(None, NOW) == "none"


def test_alert_states_are_named_by_their_lifecycle() -> None:
    def alert(alert_id: str, rank: Rank, minutes: int, by: str | None = None) -> Alert:
        at = NOW + dt.timedelta(minutes=minutes)
        return Alert(
            alert_id=alert_id, episode_id="EP", obligation_id="o", kind=ObligationKind.RISK_REVIEW,
            due_at=at, escalation_level=1, rank=rank, raised_at=at, scheduled_at=at,
            acknowledged_by=by, state=AlertState.ACKNOWLEDGED if by else AlertState.TRIGGERED,
        )  # fmt: skip

    alerts = [
        alert("a", Rank.SERGEANT, 1),
        alert("b", Rank.INSPECTOR, 2),
        alert("c", Rank.SERGEANT, 3, "X"),
    ]
    assert [views.alert_state(a) for a in alerts] == ["triggered", "triggered", "acknowledged"]


# --- over HTTP, no engine needed ----------------------------------------------------------------


@pytest.fixture
async def ui(offline_settings: Settings) -> httpx.AsyncClient:
    app = create_app(offline_settings)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ui")


async def signed_in(ui: httpx.AsyncClient, settings: Settings, role: Role = Role.OFFICER) -> str:
    """Sign in with a ticket and give a purpose; the CSRF token of the session."""
    ticket = mint_ticket(load_secret(settings), role, "PC-9")
    answer = await ui.post("/ui/signin", data={"ticket": ticket, "next": "/ui/alerts"})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/purpose")
    page = await ui.get(answer.headers["location"])
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match
    answer = await ui.post(
        "/ui/purpose",
        data={"csrf_token": match.group(1), "purpose": "investigation", "next": "/ui/alerts"},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/alerts"
    return match.group(1)


async def test_pages_carry_the_security_headers_and_cookie_flags(
    ui: httpx.AsyncClient, offline_settings: Settings
) -> None:
    page = await ui.get("/ui/signin")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp and page.headers["x-frame-options"] == "DENY"
    assert "<script>" not in page.text  # no inline script anywhere
    ticket = mint_ticket(load_secret(offline_settings), Role.OFFICER, "PC-9")
    answer = await ui.post("/ui/signin", data={"ticket": ticket})
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain HTTP here; MISPERS_PUBLIC_URL=https://… sets it


async def test_secure_cookie_when_served_over_https(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, temporal_address="127.0.0.1:9",
        extra={"MISPERS_PUBLIC_URL": "https://mispers.force.example"},
    )  # fmt: skip
    app = create_app(settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ui"
    ) as ui:
        ticket = mint_ticket(load_secret(settings), Role.OFFICER, "PC-9")
        answer = await ui.post("/ui/signin", data={"ticket": ticket})
    assert "Secure" in answer.headers["set-cookie"]


async def test_pages_ask_for_a_purpose_once(
    ui: httpx.AsyncClient, offline_settings: Settings
) -> None:
    ticket = mint_ticket(load_secret(offline_settings), Role.OFFICER, "PC-9")
    await ui.post("/ui/signin", data={"ticket": ticket})
    answer = await ui.get("/ui/episodes")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/purpose?next=")
    await signed_in(ui, offline_settings)
    answer = await ui.get("/ui/episodes")
    assert answer.status_code == 503  # past the purpose: the engine (absent here) is asked
    assert "The workflow engine is unavailable" in answer.text


async def test_forms_need_the_session_csrf_token(
    ui: httpx.AsyncClient, offline_settings: Settings
) -> None:
    csrf = await signed_in(ui, offline_settings)
    answer = await ui.post("/ui/episodes/EP-1/enquiry", data={"csrf_token": "forged"})
    assert answer.status_code == 403 and "not from this site" in answer.text
    answer = await ui.post("/ui/signout", data={"csrf_token": csrf})
    assert answer.status_code == 303 and "signed_out" in answer.headers["location"]
    assert (await ui.get("/ui/episodes")).status_code == 303  # signed out


async def test_only_the_auditor_reads_the_audit(
    ui: httpx.AsyncClient, offline_settings: Settings
) -> None:
    await signed_in(ui, offline_settings, Role.SUPERVISOR)
    answer = await ui.get("/ui/audit")
    assert answer.status_code == 403


async def test_swagger_ui_and_govuk_assets_are_served_locally(ui: httpx.AsyncClient) -> None:
    docs = await ui.get("/docs")
    assert docs.status_code == 200
    assert "/ui/static/swagger-ui/swagger-ui-bundle.js" in docs.text
    assert "https://" not in docs.text.split("<body>")[0]  # nothing from a CDN
    for path in (
        "/ui/static/swagger-ui/swagger-ui-bundle.js",
        "/ui/static/swagger-ui/swagger-ui.css",
        "/ui/static/govuk/govuk-frontend.min.css",
        "/ui/static/govuk/govuk-frontend.min.js",
        "/ui/static/govuk/assets/fonts/bold-b542beb274-v2.woff2",
        "/ui/static/mispers.js",
    ):
        assert (await ui.get(path)).status_code == 200, path
    versions = (await ui.get("/ui/static/VERSIONS")).text
    assert "govuk-frontend 6.3.0" in versions


def force_audit(settings: Settings) -> JsonlAuditSink:
    """A force's own audit store (MISPERS_AUDIT_SINK), away from the default file."""
    where = settings.data_dir / "force-audit"
    where.mkdir(exist_ok=True)
    return JsonlAuditSink(where / "records.jsonl", fsync=False)


async def test_the_audit_page_reads_the_configured_sink_as_the_api_does(
    offline_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MISPERS_AUDIT_SINK", f"{__name__}:force_audit")
    elsewhere = force_audit(offline_settings)
    elsewhere.record_sync(
        AuditRecord.now(
            subject="SGT-ELSEWHERE", role="supervisor", action="read_child",
            child_ref="C-42", purpose="Strategy meeting",
        )
    )  # fmt: skip
    app = create_app(offline_settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ui") as ui:
        await signed_in(ui, offline_settings, Role.AUDITOR)
        page = await ui.get("/ui/audit", params={"child_ref": "C-42"})
        assert page.status_code == 200
        assert "SGT-ELSEWHERE" in page.text and "Strategy meeting" in page.text
        refused = await ui.get("/ui/audit", params={"child_ref": "C 42; drop"})
        assert refused.status_code == 400 and "govuk-error-summary" in refused.text
        token = tokens_for(offline_settings)[Role.AUDITOR]
        api = await ui.get(
            "/v1/audit", params={"child_ref": "C-42"}, headers={"authorization": f"Bearer {token}"}
        )
    assert api.status_code == 200
    # Both read the force's store, and each read is recorded there (the page's as the API's).
    subjects = [r["who"]["subject"] for r in api.json()["records"]]
    assert subjects[0] == "SGT-ELSEWHERE" and "PC-9" in subjects
    page_read = next(r for r in api.json()["records"] if r["who"]["subject"] == "PC-9")
    assert page_read["action"] == "read_audit"
    assert page_read["purpose"] == "Investigating a missing episode"
    assert not (offline_settings.data_dir / "audit.jsonl").exists()  # the default file unused


def test_times_are_stamped_for_people_and_machines() -> None:
    assert views.stamp(None) == ""
    assert views.stamp(NOW) == (
        '<time datetime="2026-11-30T12:00:00+00:00">30 Nov 2026 12:00:00 UTC</time>'
    )


async def test_mispers_open_prints_a_link_that_signs_in_once(offline_settings: Settings) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISPERS_")}
    env.update(MISPERS_DATA_DIR=str(offline_settings.data_dir), MISPERS_HTTP_PORT="8123")
    command = [sys.executable, "-m", "mispers", "open", "--role", "supervisor"]
    code, out = await run_command(*command, "--subject", "SGT-7", "--rank", "inspector", env=env)
    assert code == 0, out
    link = out.strip()
    assert link.startswith("http://127.0.0.1:8123/ui/signin?ticket=")
    ticket = link.split("ticket=", 1)[1]
    app = create_app(offline_settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ui") as ui:
        confirm = await ui.get(f"/ui/signin?ticket={ticket}")
        assert "Sign in as SGT-7" in confirm.text and "inspector" in confirm.text
        assert (await ui.post("/ui/signin", data={"ticket": ticket})).status_code == 303
        assert (await ui.post("/ui/signin", data={"ticket": ticket})).status_code == 403
    code, out = await run_command(*command[:-1], "system", "--subject", "X", env=env)
    assert code == 2 and "does not read episodes" in out
