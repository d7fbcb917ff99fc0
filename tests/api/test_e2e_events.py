"""Events over real HTTP into real workflows: every type accepted, every error answer, duplicates
and batches. The dev server, the worker and uvicorn all run; only the clock is real too."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from cloudevents.core.bindings.http import to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from mispers.domain.events import EVENT_MODELS
from mispers.domain.types import Role
from testkit.factories import CHILD_DOB, CHILD_NAME
from tests.api.conftest import Stack, unique
from tests.api.e2e import accepted, event, now, outstanding, post, report, state

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_every_event_type_but_acknowledgement_is_accepted_over_one_episode(
    http: httpx.AsyncClient, stack: Stack
) -> None:
    """The alert acknowledgement needs an alert: see test_e2e_reads (drill clock)."""
    ep, child = unique("EP"), unique("C")
    sent: list[dict[str, Any]] = []

    async def send(document: dict[str, Any], role: Role = Role.OFFICER) -> None:
        await accepted(http, stack, document, role)
        sent.append(document)

    await send(
        report(ep, child, "medium", {"child": {"responsible_authority": "Camden"}}), Role.SYSTEM
    )
    await send(event("risk.assessed", ep, {"level": "medium", "rank": "superintendent"}))
    await send(event("social_services.contacted", ep, {"authority": "Camden"}))
    await send(event("enquiry.recorded", ep, {"kind": "systems_checked"}), Role.SYSTEM)
    await send(event("enquiry.recorded", ep, {"kind": "pnc_circulated"}))
    await send(event("linked_person.identified", ep, {"relation": "associate"}))
    await send(event("sighting.reported", ep, {"seen_at": now().isoformat()}), Role.SYSTEM)
    await send(event("strategy_meeting.held", ep))
    await send(event("child.found", ep, {"found_at": now().isoformat()}))
    await send(event("linked_person.resolved", ep))
    await send(event("safe_and_well.completed", ep))
    await send(
        event(
            "social_services.contacted",
            ep,
            {"authority": "Camden", "purpose": "return_notification"},
        )
    )
    await send(event("return_interview.completed", ep))
    await send(event("crime.recorded", ep))
    episode = await state(http, stack, ep)
    assert outstanding(episode) == [], outstanding(episode)
    await send(event("closure.requested", ep))
    await send(event("closure.approved", ep, {"rank": "inspector"}), Role.SUPERVISOR)

    episode = await state(http, stack, ep)
    assert episode["status"] == "closed"
    assert {d["type"] for d in sent} == set(EVENT_MODELS) - {"mispers.alert.acknowledged"}
    timeline = {entry["event_id"]: entry for entry in episode["timeline"]}
    assert sorted(timeline) == sorted(d["id"] for d in sent)  # every event, once
    approval = timeline[sent[-1]["id"]]
    assert approval["posted_by"] == {"subject": "test-supervisor", "role": "supervisor"}
    assert timeline[sent[0]["id"]]["posted_by"] == {"subject": "test-system", "role": "system"}


async def test_same_event_twice_is_a_duplicate_and_changes_nothing(
    http: httpx.AsyncClient, stack: Stack
) -> None:
    ep = unique("EP")
    reported = report(ep, unique("C"))
    assert (await accepted(http, stack, reported))["status"] == "accepted"
    again = await post(http, stack, reported)
    assert again.status_code == 202
    assert again.json() == {"episode_id": ep, "event_id": reported["id"], "status": "duplicate"}
    found = event("child.found", ep, {"found_at": now().isoformat()})
    await accepted(http, stack, found)
    before = await state(http, stack, ep)
    for _ in range(2):
        response = await post(http, stack, found, Role.OFFICER)
        assert response.json()["status"] == "duplicate"
    after = await state(http, stack, ep)
    assert [e["event_id"] for e in after["timeline"]] == [reported["id"], found["id"]]
    assert after["obligations"] == before["obligations"]


async def test_binary_mode_from_the_sdk(http: httpx.AsyncClient, stack: Stack) -> None:
    ep = unique("EP")
    await accepted(http, stack, report(ep, unique("C")))
    document = event("enquiry.recorded", ep)
    data = document.pop("data")
    document.pop("specversion")
    from datetime import datetime

    isoparse = datetime.fromisoformat

    document["time"] = isoparse(document["time"])
    document["datacontenttype"] = "application/json"
    message = to_binary(CloudEvent(document, data), JSONFormat())
    headers = {**message.headers, **stack.headers(Role.SYSTEM)}
    response = await http.post("/v1/events", content=message.body, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"


async def test_error_answers(http: httpx.AsyncClient, stack: Stack) -> None:
    ep, child = unique("EP"), unique("C")
    headers = {"content-type": "application/cloudevents+json", **stack.headers(Role.SUPERVISOR)}

    async def problem(response: httpx.Response, status: int) -> dict[str, Any]:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        body: dict[str, Any] = response.json()
        return body

    # 400: malformed JSON, and a well-formed JSON that is no CloudEvent
    await problem(await http.post("/v1/events", content=b'{"id": ', headers=headers), 400)
    envelope_problem = await problem(
        await http.post("/v1/events", content=b'{"specversion": "1.0"}', headers=headers), 400
    )
    assert "subject" in envelope_problem["detail"]
    # 422: a field and the rule, no value echoed
    bad = report(ep, child, data={"child": {"date_of_birth": CHILD_NAME}})
    body = await problem(await post(http, stack, bad), 422)
    assert body["errors"][0]["field"] == "data.child.date_of_birth"
    assert CHILD_NAME not in json.dumps(body)
    # 404: an event for an episode never reported
    body = await problem(await post(http, stack, event("crime.recorded", unique("EP"))), 404)
    assert body["type"].endswith("episode-not-found")
    # 409: the floor named (every missing child is at least medium)
    await accepted(http, stack, report(ep, child, "high"))
    body = await problem(
        await post(http, stack, event("risk.assessed", ep, {"level": "low", "rank": "inspector"})),
        409,
    )
    assert body["refusal"]["code"] == "below_floor"
    assert body["refusal"]["details"]["floor"] == "medium"
    # 409: closure with open obligations lists them
    await accepted(http, stack, event("child.found", ep, {"found_at": now().isoformat()}))
    body = await problem(await post(http, stack, event("closure.requested", ep)), 409)
    assert body["refusal"]["code"] == "open_obligations"
    open_ids = {o["id"] for o in body["refusal"]["details"]["open_obligations"]}
    assert "safe_and_well_check" in open_ids
    # 401 / 403
    await problem(await http.post("/v1/events", content=b"{}"), 401)
    wrong = {**headers, "authorization": "Bearer " + stack.tokens[Role.OFFICER] + "x"}
    await problem(await http.post("/v1/events", content=b"{}", headers=wrong), 401)
    await problem(await post(http, stack, event("crime.recorded", ep), Role.AUDITOR), 403)
    # 403: an officer may not lower the grade; a supervisor may (above the floor)
    await accepted(http, stack, event("risk.assessed", ep, {"level": "high"}))
    downgrade = event("risk.assessed", ep, {"level": "medium", "rank": "inspector"})
    body = await problem(await post(http, stack, downgrade, Role.OFFICER), 403)
    assert body["required_role"] == "supervisor"
    await accepted(http, stack, downgrade, Role.SUPERVISOR)
    # 413 / 415
    huge = event("crime.recorded", ep, {"classification": "x" * (1024 * 1024)})
    await problem(await post(http, stack, huge), 413)
    await problem(
        await http.post(
            "/v1/events", content=b"x", headers={**headers, "content-type": "text/csv"}
        ),
        415,
    )
    # nothing above reached the episode's record
    episode = await state(http, stack, ep)
    assert len(episode["timeline"]) == 4
    assert CHILD_DOB not in json.dumps(body)


async def test_batch_reports_each_outcome_in_order(http: httpx.AsyncClient, stack: Stack) -> None:
    ep, other = unique("EP"), unique("EP")
    reported = report(ep, unique("C"))
    batch = [
        reported,
        event("enquiry.recorded", ep),
        event("crime.recorded", ep, {"crime_ref": "not a ref"}),
        event("crime.recorded", unique("EP")),
        reported,
        report(other, unique("C")),
        event("closure.requested", ep),
        {"specversion": "1.0"},
    ]
    response = await post(http, stack, batch, Role.OFFICER)
    assert response.status_code == 202, response.text
    answers = response.json()
    assert [a["status"] for a in answers] == [
        "accepted",
        "accepted",
        "rejected",
        "rejected",
        "duplicate",
        "accepted",
        "rejected",
        "rejected",
    ]
    assert [a.get("problem", {}).get("status") for a in answers] == [
        None,
        None,
        422,
        404,
        None,
        None,
        409,
        400,
    ]
    assert answers[1]["event_id"] == batch[1]["id"]
    assert answers[6]["problem"]["refusal"]["code"] == "child_not_found"
    episode = await state(http, stack, ep)
    assert [e["event_id"] for e in episode["timeline"]] == [batch[0]["id"], batch[1]["id"]]
    assert (await state(http, stack, other))["status"] == "missing"
