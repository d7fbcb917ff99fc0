"""Supervisor reads over real HTTP: list filters on the search attributes, paging, one episode,
a child's record, the role matrix, and an alert acknowledged on the drill clock."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mispers.domain.types import Role
from tests.api.conftest import Stack, unique
from tests.api.e2e import accepted, event, listed, now, outstanding, post, report, state
from tests.conftest import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_list_filters_and_paging(http: httpx.AsyncClient, stack: Stack) -> None:
    child = unique("C")
    high, medium, found = unique("EP"), unique("EP"), unique("EP")
    await accepted(http, stack, report(high, child, "high"))
    await accepted(http, stack, report(medium, child, "medium"))
    await accepted(http, stack, report(found, child, "medium"))
    await accepted(http, stack, event("child.found", found, {"found_at": now().isoformat()}))

    def ids(episodes: list[dict[str, Any]]) -> set[str]:
        return {e["episode_id"] for e in episodes}

    everything = await listed(http, stack, lambda e: len(e) == 3, child_ref=child)
    assert ids(everything) == {high, medium, found}
    summary = next(e for e in everything if e["episode_id"] == high)
    assert summary["risk_level"] == "high" and summary["child_ref"] == child
    assert summary["overdue_count"] == 0 and summary["next_deadline"] is not None
    assert set(summary) == {
        "episode_id",
        "status",
        "risk_level",
        "child_ref",
        "overdue_count",
        "next_deadline",
    }
    await listed(http, stack, lambda e: ids(e) == {high}, child_ref=child, risk="high")
    await listed(http, stack, lambda e: ids(e) == {found}, child_ref=child, status="found")
    await listed(
        http, stack, lambda e: ids(e) == {medium}, child_ref=child, status="missing", risk="medium"
    )
    await listed(
        http, stack, lambda e: ids(e) == {high, medium, found}, child_ref=child, overdue="false"
    )
    assert await listed(http, stack, lambda e: True, child_ref=child, overdue="true") == []

    seen: list[str] = []
    token: str | None = None
    for _ in range(3):
        params: dict[str, Any] = {"child_ref": child, "page_size": 1}
        if token:
            params["page_token"] = token
        response = await http.get(
            "/v1/episodes", params=params, headers=stack.headers(Role.AUDITOR)
        )
        assert response.status_code == 200
        page = response.json()
        assert len(page["episodes"]) == 1
        seen += [e["episode_id"] for e in page["episodes"]]
        token = page["next_page_token"]
    assert set(seen) == {high, medium, found}
    response = await http.get(
        "/v1/episodes",
        params={"page_token": "bm90LWEtdG9rZW4="},
        headers=stack.headers(Role.AUDITOR),
    )
    assert response.status_code == 422


async def test_episode_and_child_reads(http: httpx.AsyncClient, stack: Stack) -> None:
    ep, child = unique("EP"), unique("C")
    missing = await http.get(f"/v1/episodes/{ep}", headers=stack.headers(Role.AUDITOR))
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    no_child = await http.get(f"/v1/children/{child}", headers=stack.headers(Role.AUDITOR))
    assert no_child.status_code == 404

    await accepted(http, stack, report(ep, child, "high"), Role.SYSTEM)
    episode = await state(http, stack, ep)
    for key in (
        "episode_id",
        "status",
        "child_ref",
        "looked_after",
        "risk",
        "flags",
        "repeat",
        "obligations",
        "communications",
        "alerts",
        "timeline",
        "policy_version",
    ):
        assert key in episode
    assert {"level", "floor", "floor_reasons", "history"} <= set(episode["risk"])
    assert episode["timeline"][0]["posted_by"] == {"subject": "test-system", "role": "system"}
    assert "time scale 1" in episode["policy_version"]
    kinds = {o["kind"] for o in episode["obligations"]}
    assert {"systems_checks", "supervisor_review", "pnc_circulated"} <= kinds

    async def child_record() -> httpx.Response:
        return await http.get(f"/v1/children/{child}", headers=stack.headers(Role.OFFICER))

    record = await eventually(child_record, lambda r: r.status_code == 200)
    assert [e["episode_id"] for e in record.json()["episodes"]] == [ep]


ENDPOINTS: list[tuple[str, str, set[Role]]] = [
    ("GET", "/v1/episodes", {Role.OFFICER, Role.SUPERVISOR, Role.AUDITOR}),
    ("GET", "/v1/episodes/{ep}", {Role.OFFICER, Role.SUPERVISOR, Role.AUDITOR}),
    ("GET", "/v1/children/{child}", {Role.OFFICER, Role.SUPERVISOR, Role.AUDITOR}),
    ("GET", "/v1/event-types", set(Role)),
    ("GET", "/metrics", set(Role)),
    ("POST", "/v1/events", {Role.SYSTEM, Role.OFFICER, Role.SUPERVISOR}),
]


async def test_role_matrix(http: httpx.AsyncClient, stack: Stack) -> None:
    ep, child = unique("EP"), unique("C")
    await accepted(http, stack, report(ep, child))
    await eventually(
        lambda: http.get(f"/v1/children/{child}", headers=stack.headers(Role.OFFICER)),
        lambda r: r.status_code == 200,
    )
    for method, template, allowed in ENDPOINTS:
        for role in Role:
            path = template.format(ep=ep, child=child)
            if method == "POST":
                response = await post(http, stack, event("enquiry.recorded", ep), role)
                ok = 202
            else:
                response = await http.get(path, headers=stack.headers(role))
                ok = 200
            expected = ok if role in allowed else 403
            assert response.status_code == expected, (method, path, role, response.text)
            anonymous = await http.request(method, path)
            assert anonymous.status_code == 401
    # supervisor decisions: closure approval (and its waivers)
    approve = event("closure.approved", ep, {"waivers": [{"obligation_id": "x", "reason": "r"}]})
    for role in (Role.SYSTEM, Role.OFFICER):
        assert (await post(http, stack, approve, role)).status_code == 403
    refused = await post(http, stack, approve, Role.SUPERVISOR)
    assert refused.status_code == 409  # allowed to ask; the episode's rules say not yet


async def test_health_and_metrics(http: httpx.AsyncClient, stack: Stack) -> None:
    health = await http.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "engine": "reachable"}
    await accepted(http, stack, report(unique("EP"), unique("C")))
    metrics = await http.get("/metrics", headers=stack.headers(Role.AUDITOR))
    assert 'mispers_events_accepted_total{status="accepted",type="mispers.episode.reported"}' in (
        metrics.text
    )
    assert "mispers_http_request_duration_seconds_bucket" in metrics.text


async def test_alert_is_acknowledged_and_listed_as_overdue_on_the_drill_clock(
    stack: Stack,
) -> None:
    """At DRILL_TIME_SCALE the systems checks (30 min for high risk) fall due in 1.5 s."""
    ep, child = unique("EP"), unique("C")
    async with httpx.AsyncClient(base_url=stack.drill_url, timeout=30) as drill:
        await accepted(drill, stack, report(ep, child, "high"))

        async def alerts() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = (await state(drill, stack, ep))["alerts"]
            return found

        first = (await eventually(alerts, bool, within=30))[0]
        assert {"alert_id", "obligation_id", "rank", "raised_at"} <= set(first)
        # The acknowledger is the token's subject: acknowledging for someone else is refused.
        for_another = event("alert.acknowledged", ep, {"alert_id": first["alert_id"]})
        assert (await post(drill, stack, for_another)).status_code == 403
        ack = {"alert_id": first["alert_id"], "by": "test-supervisor"}
        await accepted(drill, stack, event("alert.acknowledged", ep, ack))
        acknowledged = next(a for a in await alerts() if a["alert_id"] == first["alert_id"])
        assert acknowledged["acknowledged_by"] == "test-supervisor"
        assert acknowledged["state"] == "acknowledged"

        overdue = await listed(drill, stack, lambda e: len(e) == 1, child_ref=child, overdue="true")
        assert overdue[0]["episode_id"] == ep and overdue[0]["overdue_count"] > 0

        # Close it so its timers stop: found, then every outstanding obligation waived.
        await accepted(drill, stack, event("child.found", ep, {"found_at": now().isoformat()}))

        async def approve() -> httpx.Response:
            waivers = [
                {"obligation_id": o["id"], "reason": "drill"}
                for o in outstanding(await state(drill, stack, ep))
                if o["kind"] != "closure_review"
            ]
            return await post(drill, stack, event("closure.approved", ep, {"waivers": waivers}))

        closed = await eventually(approve, lambda r: r.status_code == 202, within=30)
        assert closed.json()["status"] == "accepted"
        assert (await state(drill, stack, ep))["status"] == "closed"
