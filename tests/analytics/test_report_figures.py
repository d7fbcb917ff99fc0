"""The report's figures on a small hand-made set whose answers are worked out here, the JSON
shape other tools read, the endpoint's roles, and the documents as a person sees them (the PDF's
pages rendered to PNG and looked at; the PNGs are kept under the test's tmp dir).

Six medium-risk episodes in March 2026 (default policy: systems checks due 1 h, social care told
of a missing child 4 h, 1 h for a looked-after child; return interview 72 h after found). Every
step is on time except:
- E2: social care told at 5 h 30 min (due 4 h): met late after 330 min; an alert to a sergeant.
- E3: no return interview: waived at closure ("family declined").
- E4: reported as low (the child floor makes it medium); systems checks at 90 min (due 1 h):
  met late, an alert to a sergeant at 1 h, acknowledged 10 minutes later.
- E5: looked after, placed out of area: responsible and host authority each told (40, 50 min).
- E6: found after 11 hours (the others after 2).
E1 and E2 are the same child, reported a day apart: E2 is a repeat.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mispers.analytics.document import render_html, write_report
from mispers.analytics.figures import OUTCOMES, compute, public_json
from mispers.analytics.record import episode_record
from mispers.analytics.store import open_store
from mispers.api import create_app
from mispers.config import Settings
from mispers.domain.types import Role
from mispers.offline import ChildRecords, Recorded, run_episode
from mispers.policy import Policy
from testkit.factories import event
from tests.api.conftest import tokens_for

H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)
MARCH = (dt.date(2026, 3, 1), dt.date(2026, 3, 31))


def _stream(n: int, t0: dt.datetime) -> list[Any]:
    eid = f"E{n}"
    child = "C-A" if n in (1, 2) else f"C-{n}"
    lac = n == 5
    found = t0 + (11 * H if n == 6 else 2 * H)
    reported: dict[str, Any] = {
        "child": {"child_ref": child, "looked_after": lac, "responsible_authority": "Kent"},
        "last_seen_at": t0.isoformat(),
        "initial_risk": "low" if n == 4 else "medium",
    }
    if lac:
        reported["child"]["host_authority"] = "Medway"

    def told(authority: str, purpose: str = "missing_notification") -> dict[str, Any]:
        return {"authority": authority, "purpose": purpose}

    events = [
        event("episode.reported", eid, t0, reported),
        event("enquiry.recorded", eid, t0 + (90 * M if n == 4 else 20 * M)),
        event("risk.assessed", eid, t0 + 30 * M, {"level": "medium"}),
        event("social_services.contacted", eid, t0 + (330 * M if n == 2 else 40 * M), told("Kent")),
        event("enquiry.recorded", eid, t0 + H, {"kind": "pnc_circulated"}),
        event("child.found", eid, found, {"found_at": found.isoformat()}),
        event("safe_and_well.completed", eid, found + H),
        event(
            "social_services.contacted",
            eid,
            found + 2 * H,
            told("Kent", "return_notification"),
        ),
    ]
    if n == 4:
        events.append(
            event("alert.acknowledged", eid, t0 + 70 * M, {"alert_id": "E4:systems_checks:L1"})
        )
    if lac:
        events += [
            event("social_services.contacted", eid, t0 + 50 * M, told("Medway")),
            event(
                "social_services.contacted",
                eid,
                found + 2 * H,
                told("Medway", "return_notification"),
            ),
        ]
    if n == 3:
        waiver = {"obligation_id": "return_interview", "reason": "family declined"}
        events.append(event("closure.approved", eid, found + 24 * H, {"waivers": [waiver]}))
    else:
        events += [
            event("return_interview.completed", eid, found + 22 * H),
            event("closure.requested", eid, found + 23 * H),
            event("closure.approved", eid, found + 24 * H),
        ]
    return events


@pytest.fixture
def store_dir(tmp_path: Path, policy: Policy) -> Path:
    records = ChildRecords()
    built = []
    for n in range(1, 7):
        t0 = dt.datetime(2026, 3, 1 + n, 10, tzinfo=dt.UTC)
        run = run_episode(
            f"E{n}",
            [Recorded.as_it_happened(e) for e in _stream(n, t0)],
            policy,
            records=records,
        )
        assert run.refused == [], run.refused
        assert run.state.status.value == "closed"
        built.append(episode_record(run.state, "hand", run.state.closed_at or t0))
    open_store(tmp_path, None).write(built)
    return tmp_path


@pytest.fixture
def report(store_dir: Path) -> dict[str, Any]:
    con = open_store(store_dir, None).reader()
    return compute(con, *MARCH)


def test_the_figures_worked_out_by_hand(report: dict[str, Any]) -> None:
    assert report["period"] == {"from": "2026-03-01", "to": "2026-03-31"}
    assert report["episodes"] == 6
    ob = report["obligations"]
    assert ob["systems_checks"] == {
        "due": 6,
        "met_on_time": 5,
        "met_late": 1,
        "waived": 0,
        "overdue": 0,
        "median_minutes_to_meet": 20.0,
        "p90_minutes_to_meet": 55.0,  # 20 x5 and 90: 20 + 0.5 x 70
    }
    missing = ob["social_services_notified_missing"]
    assert (missing["due"], missing["met_on_time"], missing["met_late"]) == (7, 6, 1)
    assert missing["median_minutes_to_meet"] == 40.0  # 40 x5, 50, 330
    ri = ob["return_interview"]
    assert (ri["due"], ri["met_on_time"], ri["waived"]) == (6, 5, 1)
    assert ri["median_minutes_to_meet"] == 22 * 60.0
    assert report["waiver_reasons"] == {"return_interview": {"family declined": 1}}
    for kind, figures in ob.items():
        assert sum(figures[o] for o in OUTCOMES) == figures["due"], kind
    # the periodic reviews lapsed when the children were found, before they fell due
    assert "risk_review" not in ob
    assert report["closures"] == {"closed": 6, "with_waivers": 1}
    risk = report["risk"]
    assert risk["at_report"] == {"very_low": 0, "low": 1, "medium": 5, "high": 0}
    assert risk["at_close"] == {"very_low": 0, "low": 0, "medium": 6, "high": 0}
    assert (risk["graded_up"], risk["floors_applied"], risk["graded_down"]) == (1, 1, 0)
    assert report["repeats"]["repeat_episodes"] == 1
    assert report["repeats"]["children"] == 5
    tm = report["time_missing"]
    assert tm["buckets"] == {"up_to_24h": 6, "24h_to_72h": 0, "72h_to_7d": 0, "over_7d": 0}
    assert tm["median_hours"] == 2.0
    alerts = report["alerts"]
    assert alerts["by_rank"] == {"sergeant": 2, "inspector": 0, "superintendent": 0}
    assert (alerts["acknowledged"], alerts["median_minutes_to_acknowledge"]) == (1, 10.0)
    assert alerts["re_escalations"] == 0
    lac = report["cuts"]["looked_after"]["looked_after"]
    assert lac["social_services_notified_missing"]["due"] == 2
    assert report["cuts"]["looked_after"]["not_looked_after"]["systems_checks"]["due"] == 5


def test_an_empty_period_has_nothing_due(store_dir: Path) -> None:
    con = open_store(store_dir, None).reader()
    empty = compute(con, dt.date(2025, 1, 1), dt.date(2025, 1, 31))
    assert empty["episodes"] == 0 and empty["obligations"] == {}
    render_html(empty)  # renders without figures to draw


def test_small_numbers_are_suppressed_in_the_document(report: dict[str, Any]) -> None:
    page = render_html(report)
    assert "&lt;5" in page
    row = page[page.index("<td>systems checks</td>") :].split("</tr>")[0]
    assert row.count("<td>") == 9
    assert "<td>6</td>" in row and "<td>&lt;5</td>" in row  # due 6; met late 1 shown as <5
    for external in ("src=", "<link", "@import", "url(http", 'href="http'):
        assert external not in page  # self-contained: nothing fetched when opened
    assert page.count("<svg") == 4  # compliance, time to found, alerts per week, acknowledgement
    assert "family declined" not in page  # a reason given fewer than five times is grouped


def test_the_pdf_pages_are_not_blank(report: dict[str, Any], tmp_path: Path) -> None:
    pdftoppm = shutil.which("pdftoppm")
    assert pdftoppm, "pdftoppm (apt: poppler-utils) is needed; .ci/run installs it"
    pdf = tmp_path / "report.pdf"
    write_report(report, pdf)
    assert pdf.read_bytes().startswith(b"%PDF")
    subprocess.run([pdftoppm, "-r", "40", "-png", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 2
    from PIL import Image

    for page in pages:
        with Image.open(page) as image:
            grey = image.convert("L")
            dark = sum(grey.histogram()[:200])
            assert dark > 0.005 * grey.width * grey.height, f"{page.name} looks blank"


def test_the_json_file_has_the_shape_other_tools_read(
    report: dict[str, Any], tmp_path: Path
) -> None:
    import json

    out = tmp_path / "report.json"
    write_report(report, out)
    doc = json.loads(out.read_text())
    assert doc == json.loads(json.dumps(public_json(report), default=str))
    assert set(doc["period"]) == {"from", "to"} and isinstance(doc["episodes"], int)
    for figures in doc["obligations"].values():
        assert {"due", *OUTCOMES, "median_minutes_to_meet"} <= set(figures)


@pytest.fixture
async def api(store_dir: Path) -> AsyncIterator[tuple[httpx.AsyncClient, dict[Role, str]]]:
    settings = Settings(data_dir=store_dir, temporal_address="127.0.0.1:9")
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client, tokens_for(settings)


async def test_the_endpoint_answers_supervisors_and_auditors(
    api: tuple[httpx.AsyncClient, dict[Role, str]], report: dict[str, Any]
) -> None:
    client, tokens = api
    url = "/v1/reports/compliance?from=2026-03-01&to=2026-03-31"
    for role in (Role.SUPERVISOR, Role.AUDITOR):
        answer = await client.get(url, headers={"authorization": f"Bearer {tokens[role]}"})
        assert answer.status_code == 200
        assert answer.json()["obligations"] == report["obligations"]
    for role in (Role.OFFICER, Role.SYSTEM):
        answer = await client.get(url, headers={"authorization": f"Bearer {tokens[role]}"})
        assert answer.status_code == 403
    auditor = {"authorization": f"Bearer {tokens[Role.AUDITOR]}"}
    bad = await client.get("/v1/reports/compliance?from=2026-03-31&to=2026-03-01", headers=auditor)
    assert bad.status_code == 422 and "to" in bad.text
    bad = await client.get("/v1/reports/compliance?from=March&to=2026-03-01", headers=auditor)
    assert bad.status_code == 422
    assert (await client.get(url)).status_code == 401
