"""Accountability end to end: the rank a token holds bounds the rank an event may claim, judged by
the episode itself (so a race cannot slip a downgrade past it), and every read, accepted event
and refused access lands in the hash-chained access audit, read back with `mispers audit` run
as a separate process, never written by hand."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from mispers.api.auth import load_secret, mint_token
from mispers.config import Settings
from mispers.domain.types import Rank, Role
from mispers.security.audit import AuditSink, JsonlAuditSink
from testkit.receivers import free_port
from tests.api.conftest import Stack, running_api, unique
from tests.api.e2e import accepted, event, now, post, report, state
from tests.conftest import eventually, run_command

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


async def audit_cli(data_dir: Path, *args: str) -> tuple[int, str]:
    env = {**os.environ, "MISPERS_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    env.pop("MISPERS_AUDIT_SINK", None)
    return await run_command(sys.executable, "-m", "mispers", "audit", *args, env=env)


async def audit_json(stack: Stack, *args: str) -> list[dict[str, Any]]:
    code, output = await audit_cli(stack.settings.data_dir, *args, "--json")
    assert code == 0, output
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def token(stack: Stack, role: Role, subject: str, rank: Rank | None = None) -> dict[str, str]:
    signed = mint_token(load_secret(stack.settings), role, subject, rank=rank)
    return {"authorization": f"Bearer {signed}"}


async def post_as(
    http: httpx.AsyncClient, headers: dict[str, str], document: dict[str, Any]
) -> httpx.Response:
    return await http.post(
        "/v1/events",
        content=json.dumps(document),
        headers={"content-type": "application/cloudevents+json", **headers},
    )


# --- authority from the token ---------------------------------------------------------------


async def test_an_officer_claiming_a_superintendents_rank_is_403_and_audited(
    http: httpx.AsyncClient, stack: Stack
) -> None:
    ep, child = unique("EP"), unique("C")
    await accepted(http, stack, report(ep, child, "medium"), Role.SYSTEM)
    officer = token(stack, Role.OFFICER, "PC-77")
    claim = event("risk.assessed", ep, {"level": "high", "rank": "superintendent"})
    answer = await post_as(http, officer, claim)
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["refusal"]["code"] == "rank_above_token"
    assert problem["refusal"]["details"] == {
        "claimed_rank": "superintendent",
        "token_rank": "officer",
    }
    assert problem["episode_id"] == ep and problem["event_id"] == claim["id"]
    episode = await state(http, stack, ep)
    assert claim["id"] not in {e["event_id"] for e in episode["timeline"]}
    review = next(o for o in episode["obligations"] if o["id"] == "supervisor_review")
    assert review["status"] == "open"  # the claimed rank met nothing

    # The same claim from an inspector's token is refused too; the records system vouches.
    inspector = token(stack, Role.SUPERVISOR, "INSP-3", Rank.INSPECTOR)
    assert (await post_as(http, inspector, claim)).status_code == 403
    assert (await post_as(http, token(stack, Role.SYSTEM, "niche"), claim)).status_code == 202

    records = await audit_json(stack, "--episode", ep)
    refused = [r for r in records if r["action"] == "access_refused"]
    assert [(r["who"]["subject"], r["who"]["rank"]) for r in refused] == [
        ("PC-77", "officer"),
        ("INSP-3", "inspector"),
    ]
    assert {r["detail"]["reason"] for r in refused} == {"rank_above_token"}
    accepted_ids = [r["detail"]["event_id"] for r in records if r["action"] == "event_accepted"]
    assert claim["id"] in accepted_ids


@pytest.mark.parametrize("role", [Role.SYSTEM, Role.OFFICER])
async def test_closure_approval_needs_a_supervisor(
    http: httpx.AsyncClient, stack: Stack, role: Role
) -> None:
    ep = unique("EP")
    await accepted(http, stack, report(ep, unique("C")), Role.SYSTEM)
    await accepted(http, stack, event("child.found", ep, {"found_at": now().isoformat()}))
    approval = event("closure.approved", ep, {"rank": "sergeant"})
    answer = await post(http, stack, approval, role)
    assert answer.status_code == 403, answer.text
    assert answer.json()["required_role"] == "supervisor"
    assert answer.json()["refusal"]["code"] == "supervisor_only"


async def test_a_raise_and_an_officers_downgrade_race_and_no_downgrade_is_accepted(
    http: httpx.AsyncClient, stack: Stack
) -> None:
    """Each round the episode stands at medium; an officer raises it to high while another
    officer, having read medium, grades it medium. If the raise lands first the second grading
    is a downgrade and must be refused, by the same state the write sees."""
    ep = unique("EP")
    await accepted(http, stack, report(ep, unique("C"), "medium"), Role.SYSTEM)
    officer_a, officer_b = token(stack, Role.OFFICER, "PC-A"), token(stack, Role.OFFICER, "PC-B")
    outcomes: dict[int, int] = {}
    officer_ids: set[str] = set()
    for _ in range(50):
        raise_ = event("risk.assessed", ep, {"level": "high", "rank": "officer"})
        keep = event("risk.assessed", ep, {"level": "medium", "rank": "officer"})
        officer_ids |= {raise_["id"], keep["id"]}
        up, down = await asyncio.gather(
            post_as(http, officer_a, raise_), post_as(http, officer_b, keep)
        )
        assert up.status_code == 202, up.text
        outcomes[down.status_code] = outcomes.get(down.status_code, 0) + 1
        if down.status_code == 403:
            assert down.json()["refusal"]["code"] == "downgrade_needs_supervisor"
        else:
            assert down.status_code == 202, down.text
        reset = event("risk.assessed", ep, {"level": "medium", "rank": "sergeant"})
        await accepted(http, stack, reset, Role.SUPERVISOR)
    history = (await state(http, stack, ep))["risk"]["history"]
    order = ["very_low", "low", "medium", "high"]
    for before, entry in itertools.pairwise(history):
        if entry.get("event_id") in officer_ids:
            assert order.index(entry["level"]) >= order.index(before["level"]), entry
    assert sum(outcomes.values()) == 50 and set(outcomes) <= {202, 403}
    assert outcomes.get(403, 0) > 0  # the raise did land first: the race was run


# --- the access audit -----------------------------------------------------------------------


async def test_reads_lists_and_refusals_are_audited_with_who_where_and_why(
    http: httpx.AsyncClient, stack: Stack
) -> None:
    ep, child = unique("EP"), unique("C")
    started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    await accepted(http, stack, report(ep, child, "high"), Role.SYSTEM)
    inspector = token(stack, Role.SUPERVISOR, "INSP-9", Rank.INSPECTOR)
    purpose = "Strategy meeting prep: Camden MASH referral 4471"
    agent = {"user-agent": "mispers-e2e/1"}
    read = await http.get(
        f"/v1/episodes/{ep}", headers={**inspector, **agent, "X-Mispers-Purpose": purpose}
    )
    assert read.status_code == 200
    auditor = token(stack, Role.AUDITOR, "AUD-1")
    child_read = await eventually(
        lambda: http.get(f"/v1/children/{child}", headers=auditor),
        lambda r: r.status_code == 200,
    )
    assert child_read.status_code == 200
    listing = await eventually(
        lambda: http.get("/v1/episodes", params={"child_ref": child}, headers=inspector),
        lambda r: r.status_code == 200 and len(r.json()["episodes"]) == 1,
    )
    assert listing.json()["episodes"][0]["episode_id"] == ep
    assert (await http.get(f"/v1/episodes/{ep}")).status_code == 401
    officer = token(stack, Role.OFFICER, "PC-5")
    assert (await http.get(f"/v1/audit?child_ref={child}", headers=officer)).status_code == 403
    too_long = await http.get(
        f"/v1/episodes/{ep}", headers={**inspector, "X-Mispers-Purpose": "x" * 201}
    )
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["field"] == "X-Mispers-Purpose"

    records = await audit_json(stack, "--child", child)
    by_action: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_action.setdefault(record["action"], []).append(record)
    [accepted_event] = by_action["event_accepted"]
    assert accepted_event["who"] == {"subject": "test-system", "role": "system", "rank": None}
    [episode_read] = [r for r in by_action["read_episode"] if r["who"]["subject"] == "INSP-9"]
    assert episode_read["who"] == {"subject": "INSP-9", "role": "supervisor", "rank": "inspector"}
    assert episode_read["target"]["child_ref"] == child
    assert (episode_read["purpose"], episode_read["purpose_given"]) == (purpose, True)
    assert episode_read["from"] == "127.0.0.1" and episode_read["user_agent"] == "mispers-e2e/1"
    child_reads = by_action["read_child"]
    assert {r["who"]["subject"] for r in child_reads} == {"AUD-1"}
    assert all(r["purpose"] is None and r["purpose_given"] is False for r in child_reads)
    assert ep in child_reads[-1]["target"]["episode_ids"]
    lists = by_action["list_episodes"]
    assert lists[-1]["target"]["episode_ids"] == [ep]
    assert lists[-1]["detail"]["child_ref"] == child
    refused = by_action["access_refused"]
    assert [(r["who"]["role"], r["detail"]["status"]) for r in refused] == [
        ("none", 401),
        ("officer", 403),
    ]

    # The same, by subject and time, and over the API for an auditor (whose read is recorded).
    mine = await audit_json(stack, "--subject", "INSP-9", "--since", started.isoformat())
    assert {r["action"] for r in mine} == {"read_episode", "list_episodes"}
    assert await audit_json(stack, "--subject", "INSP-9", "--until", started.isoformat()) == []
    api = await http.get("/v1/audit", params={"child_ref": child}, headers=auditor)
    assert api.status_code == 200, api.text
    assert [r["hash"] for r in api.json()["records"]] == [r["hash"] for r in records]
    code, table = await audit_cli(stack.settings.data_dir, "--child", child)
    assert code == 0 and "(no purpose given)" in table and "INSP-9" in table
    again = await audit_json(stack, "--subject", "AUD-1")
    assert again[-1]["action"] == "read_audit" and again[-1]["target"]["child_ref"] == child


async def test_the_clis_purpose_reaches_the_audit(http: httpx.AsyncClient, stack: Stack) -> None:
    ep, child = unique("EP"), unique("C")
    await accepted(http, stack, report(ep, child), Role.SYSTEM)
    env = {**os.environ, "MISPERS_DATA_DIR": str(stack.settings.data_dir), "COLUMNS": "200"}
    env.pop("MISPERS_JWT_SECRET", None)
    show = "Return interview follow-up, ref 88"
    code, output = await run_command(
        sys.executable, "-m", "mispers", "episodes", "show", ep, "--url", stack.url,
        "--purpose", show, env=env,
    )  # fmt: skip
    assert code == 0, output
    listing = "Morning briefing"
    await eventually(
        lambda: http.get("/v1/episodes", params={"child_ref": child}, headers=stack.headers()),
        lambda r: r.status_code == 200 and len(r.json()["episodes"]) == 1,
    )
    code, output = await run_command(
        sys.executable, "-m", "mispers", "episodes", "list", "--child-ref", child,
        "--url", stack.url, env={**env, "MISPERS_PURPOSE": listing},
    )  # fmt: skip
    assert code == 0, output
    code, output = await run_command(
        sys.executable, "-m", "mispers", "episodes", "show", ep, "--url", stack.url,
        "--purpose", "x" * 201, env=env,
    )  # fmt: skip
    assert code != 0 and "at most 200" in output
    records = await audit_json(stack, "--child", child)
    purposes = {r["action"]: r["purpose"] for r in records if r["who"]["role"] == "auditor"}
    assert purposes["read_episode"] == show
    assert purposes["list_episodes"] == listing


async def test_a_list_of_alerts_is_audited(http: httpx.AsyncClient, stack: Stack) -> None:
    ep = unique("EP")
    await accepted(http, stack, report(ep, unique("C")), Role.SYSTEM)
    sergeant = token(stack, Role.SUPERVISOR, "SGT-44")
    answer = await http.get("/v1/alerts", params={"episode_id": ep}, headers=sergeant)
    assert answer.status_code == 200, answer.text
    [record] = await audit_json(stack, "--subject", "SGT-44")
    assert record["action"] == "list_alerts"
    assert record["detail"]["episode_id"] == ep
    assert record["who"] == {"subject": "SGT-44", "role": "supervisor", "rank": "sergeant"}


async def test_audit_verify_passes_on_the_real_file_and_names_the_line_after_tampering(
    http: httpx.AsyncClient, stack: Stack, tmp_path: Path
) -> None:
    ep = unique("EP")
    await accepted(http, stack, report(ep, unique("C")), Role.SYSTEM)
    for _ in range(3):
        assert (await http.get(f"/v1/episodes/{ep}", headers=stack.headers())).status_code == 200
    code, output = await audit_cli(stack.settings.data_dir, "verify")
    assert code == 0, output
    assert "audit chain intact" in output

    source = stack.settings.data_dir / "audit.jsonl"
    lines = source.read_bytes().splitlines(keepends=True)
    assert len(lines) >= 4
    target = len(lines) - 2  # 1-based number of the line tampered with

    def tampered(name: str, edit: Any) -> Path:
        data_dir = tmp_path / name
        data_dir.mkdir()
        (data_dir / "audit.jsonl").write_bytes(b"".join(edit(list(lines))))
        return data_dir

    def edited(copy: list[bytes]) -> list[bytes]:
        copy[target - 1] = copy[target - 1].replace(b'"read_episode"', b'"read_child"', 1)
        copy[target - 1] = copy[target - 1].replace(b'"event_accepted"', b'"read_child"', 1)
        return copy

    def deleted(copy: list[bytes]) -> list[bytes]:
        del copy[target - 1]
        return copy

    def swapped(copy: list[bytes]) -> list[bytes]:
        copy[target - 1], copy[target] = copy[target], copy[target - 1]
        return copy

    for name, edit in (("edited", edited), ("deleted", deleted), ("swapped", swapped)):
        assert edit(list(lines)) != lines
        code, output = await audit_cli(tampered(name, edit), "verify")
        assert code == 1, (name, output)
        assert f"broken at line {target}:" in output, (name, output)


def broken_sink(settings: Settings) -> AuditSink:
    """A file sink whose file the disk will not take (a directory stands in its place)."""
    path = settings.data_dir / "unwritable-audit"
    path.mkdir(exist_ok=True)
    return JsonlAuditSink(path)


async def test_a_read_the_audit_cannot_record_is_503_logged_and_counted(
    http: httpx.AsyncClient,
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ep = unique("EP")
    await accepted(http, stack, report(ep, unique("C")), Role.SYSTEM)
    monkeypatch.setenv("MISPERS_AUDIT_SINK", f"{__name__}:broken_sink")
    broken = dataclasses.replace(stack.settings, http_port=free_port())
    async with (
        running_api(broken) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        answer = await client.get(f"/v1/episodes/{ep}", headers=stack.headers())
        assert answer.status_code == 503, answer.text
        assert answer.json()["type"].endswith("audit-unavailable")
        assert "risk" not in answer.text and ep not in answer.text
        listing = await client.get("/v1/episodes", headers=stack.headers())
        assert listing.status_code == 503
        metrics = (await client.get("/metrics", headers=stack.headers())).text
    counted = [
        line
        for line in metrics.splitlines()
        if line.startswith('mispers_audit_write_failures_total{action="read_episode"}')
    ]
    assert counted and float(counted[0].split()[-1]) >= 1
    failures = [r for r in caplog.records if "audit write failed" in r.getMessage()]
    assert {r.levelname for r in failures} == {"ERROR"}
