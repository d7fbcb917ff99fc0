"""What the API answers before it needs the engine: auth, size, envelope and field rules, the
error shape, and the published documents. The engine here is unreachable on purpose."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mispers.api.envelope import BATCH_MEDIA_TYPE, STRUCTURED_MEDIA_TYPE
from mispers.api.ingest import MAX_BODY_BYTES
from mispers.domain.events import EVENT_MODELS
from mispers.domain.types import Role
from testkit.factories import CHILD_DOB, CHILD_NAME, envelope

STAMP = "2026-01-01T10:00:00Z"
CE = {"content-type": STRUCTURED_MEDIA_TYPE}


def bearer(tokens: dict[Role, str], role: Role) -> dict[str, str]:
    return {"authorization": f"Bearer {tokens[role]}"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"].startswith("urn:mispers:problem:")
    return body


async def test_every_endpoint_but_healthz_and_docs_needs_a_token(
    offline_client: httpx.AsyncClient,
) -> None:
    for method, path in [
        ("POST", "/v1/events"),
        ("GET", "/v1/episodes"),
        ("GET", "/v1/episodes/EP-1"),
        ("GET", "/v1/children/C-1"),
        ("GET", "/v1/event-types"),
        ("GET", "/metrics"),
    ]:
        response = await offline_client.request(method, path)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert (await offline_client.get("/openapi.json")).status_code == 200
    assert (await offline_client.get("/docs")).status_code == 200


async def test_healthz_reports_an_unreachable_engine_as_503(
    offline_client: httpx.AsyncClient,
) -> None:
    response = await offline_client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "degraded", "engine": "unreachable"}


async def test_auditor_cannot_send_and_system_cannot_read(
    offline_client: httpx.AsyncClient, offline_tokens: dict[Role, str]
) -> None:
    body = json.dumps(envelope("crime.recorded", "EP-1", STAMP))
    response = await offline_client.post(
        "/v1/events", content=body, headers={**CE, **bearer(offline_tokens, Role.AUDITOR)}
    )
    assert assert_problem(response, 403)["detail"].startswith("role 'auditor'")
    response = await offline_client.get("/v1/episodes", headers=bearer(offline_tokens, Role.SYSTEM))
    assert_problem(response, 403)


@pytest.mark.parametrize("role", [Role.SYSTEM, Role.OFFICER])
async def test_closure_approval_needs_a_supervisor(
    offline_client: httpx.AsyncClient, offline_tokens: dict[Role, str], role: Role
) -> None:
    body = json.dumps(envelope("closure.approved", "EP-1", STAMP, event_id="ap-1"))
    response = await offline_client.post(
        "/v1/events", content=body, headers={**CE, **bearer(offline_tokens, role)}
    )
    problem = assert_problem(response, 403)
    assert problem["required_role"] == "supervisor"
    assert problem["episode_id"] == "EP-1" and problem["event_id"] == "ap-1"


async def test_over_one_mebibyte_is_413(
    offline_client: httpx.AsyncClient, offline_tokens: dict[Role, str]
) -> None:
    document = envelope("crime.recorded", "EP-1", STAMP)
    document["data"]["padding"] = "x" * MAX_BODY_BYTES
    response = await offline_client.post(
        "/v1/events",
        content=json.dumps(document),
        headers={**CE, **bearer(offline_tokens, Role.SYSTEM)},
    )
    assert_problem(response, 413)


async def test_chunked_body_over_the_limit_is_413(
    offline_client: httpx.AsyncClient, offline_tokens: dict[Role, str]
) -> None:
    async def chunks() -> Any:
        for _ in range(20):
            yield b" " * 100_000

    response = await offline_client.post(
        "/v1/events", content=chunks(), headers={**CE, **bearer(offline_tokens, Role.SYSTEM)}
    )
    assert_problem(response, 413)


async def test_field_problems_never_quote_personal_data(
    offline_client: httpx.AsyncClient, offline_tokens: dict[Role, str]
) -> None:
    document = envelope(
        "episode.reported",
        "EP-1",
        STAMP,
        {"child": {"date_of_birth": f"{CHILD_NAME} {CHILD_DOB}x", "eye_colour": "blue"}},
    )
    response = await offline_client.post(
        "/v1/events",
        content=json.dumps(document),
        headers={**CE, **bearer(offline_tokens, Role.SYSTEM)},
    )
    problem = assert_problem(response, 422)
    assert {e["field"] for e in problem["errors"]} == {
        "data.child.date_of_birth",
        "data.child.eye_colour",
    }
    assert CHILD_NAME not in response.text and CHILD_DOB not in response.text


async def test_batch_answers_each_event_in_order_even_without_an_engine(
    offline_client: httpx.AsyncClient, offline_tokens: dict[Role, str]
) -> None:
    good = envelope("crime.recorded", "EP-1", STAMP, event_id="b-1")
    bad = envelope("crime.recorded", "EP-1", STAMP, {"crime_ref": "has space"}, event_id="b-2")
    response = await offline_client.post(
        "/v1/events",
        content=json.dumps([good, bad, "nope"]),
        headers={"content-type": BATCH_MEDIA_TYPE, **bearer(offline_tokens, Role.SYSTEM)},
    )
    assert response.status_code == 202
    first, second, third = response.json()
    assert first["event_id"] == "b-1" and first["problem"]["status"] == 503
    assert second["status"] == "rejected" and second["problem"]["status"] == 422
    assert third["status"] == "rejected" and third["problem"]["status"] == 400


async def test_an_event_that_passes_every_check_needs_the_engine(
    offline_client: httpx.AsyncClient, offline_tokens: dict[Role, str]
) -> None:
    response = await offline_client.post(
        "/v1/events",
        content=json.dumps(envelope("crime.recorded", "EP-1", STAMP)),
        headers={**CE, **bearer(offline_tokens, Role.SYSTEM)},
    )
    problem = assert_problem(response, 503)
    assert response.headers["retry-after"] == "1"
    assert "KeyRingError" in problem["detail"] or "Temporal" in problem["detail"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/episodes?risk=severe", "risk"),
        ("/v1/episodes?status=lost", "status"),
        ("/v1/episodes?overdue=maybe", "overdue"),
        ("/v1/episodes?child_ref=a%20b", "child_ref"),
        ("/v1/episodes?page_size=0", "page_size"),
        ("/v1/episodes/has%20space", "episode_id"),
    ],
)
async def test_bad_parameters_are_422_naming_them(
    offline_client: httpx.AsyncClient, offline_tokens: dict[Role, str], path: str, field: str
) -> None:
    response = await offline_client.get(path, headers=bearer(offline_tokens, Role.AUDITOR))
    problem = assert_problem(response, 422)
    assert [e["field"] for e in problem["errors"]] == [field]


async def test_unknown_paths_and_methods_answer_problems(
    offline_client: httpx.AsyncClient,
) -> None:
    assert_problem(await offline_client.get("/v2/nothing"), 404)
    response = await offline_client.delete("/v1/events")
    assert_problem(response, 405)
    assert "POST" in response.headers["allow"]


async def test_event_types_publish_a_json_schema_per_type(
    offline_client: httpx.AsyncClient, offline_tokens: dict[Role, str]
) -> None:
    response = await offline_client.get(
        "/v1/event-types", headers=bearer(offline_tokens, Role.SYSTEM)
    )
    assert response.status_code == 200
    published = {t["type"]: t for t in response.json()["event_types"]}
    assert set(published) == set(EVENT_MODELS)
    reported = published["mispers.episode.reported"]["data_schema"]
    assert reported["additionalProperties"] is False
    assert "child" in reported["required"]
    assert published["mispers.closure.approved"]["supervisor_only"] is True


async def test_openapi_documents_problem_answers_and_the_cloudevents_body(
    offline_client: httpx.AsyncClient,
) -> None:
    document = (await offline_client.get("/openapi.json")).json()
    post = document["paths"]["/v1/events"]["post"]
    assert set(post["requestBody"]["content"]) == {
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
        "application/json",
    }
    for code in ("400", "401", "403", "404", "409", "413", "422"):
        assert set(post["responses"][code]["content"]) == {"application/problem+json"}
    event_schema = document["components"]["schemas"]["Event_EpisodeReported"]
    assert "actor" not in event_schema["properties"]
    assert "specversion" in event_schema["required"]


async def test_metrics_count_refusals_by_type_and_reason(
    offline_client: httpx.AsyncClient, offline_tokens: dict[Role, str]
) -> None:
    body = json.dumps(envelope("crime.recorded", "EP-1", STAMP, {"crime_ref": "bad ref"}))
    await offline_client.post(
        "/v1/events", content=body, headers={**CE, **bearer(offline_tokens, Role.SYSTEM)}
    )
    metrics = await offline_client.get("/metrics", headers=bearer(offline_tokens, Role.AUDITOR))
    assert metrics.status_code == 200
    assert (
        'mispers_events_refused_total{reason="invalid-event",type="mispers.crime.recorded"}'
        in metrics.text
    )
    assert (
        'mispers_http_request_duration_seconds_count{method="POST",route="/v1/events"'
        in metrics.text
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
attribute_values = st.one_of(st.text(max_size=30), st.integers(), st.none(), st.just("1.0"))
near_events = st.fixed_dictionaries(
    {},
    optional={
        "specversion": attribute_values,
        "id": attribute_values,
        "source": attribute_values,
        "type": st.sampled_from([*EVENT_MODELS, "x"]) | attribute_values,
        "subject": st.sampled_from(["EP-1", "bad subject"]) | attribute_values,
        "time": st.sampled_from([STAMP, "2026-01-01", "x"]) | attribute_values,
        "data": json_values,
    },
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    near_events.map(lambda v: json.dumps(v).encode()),
    st.lists(near_events, max_size=3).map(lambda v: json.dumps(v).encode()),
)
content_types = st.sampled_from(
    [STRUCTURED_MEDIA_TYPE, BATCH_MEDIA_TYPE, "application/json", "text/plain", None]
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies, content_type=content_types)
async def test_no_input_gets_a_500(
    offline_client: httpx.AsyncClient,
    offline_tokens: dict[Role, str],
    body: bytes,
    content_type: str | None,
) -> None:
    headers = bearer(offline_tokens, Role.SUPERVISOR)
    if content_type:
        headers["content-type"] = content_type
    response = await offline_client.post("/v1/events", content=body, headers=headers)
    assert response.status_code in {202, 400, 403, 413, 415, 422, 503}, response.text
    if response.status_code == 202:
        for item in response.json() if isinstance(response.json(), list) else []:
            assert item["status"] == "rejected"
            assert item["problem"]["status"] != 500


async def test_dates_that_cannot_be_true_are_422_without_echoing_them(
    offline_client: httpx.AsyncClient, offline_tokens: dict[Role, str]
) -> None:
    document = envelope(
        "episode.reported",
        "EP-1",
        STAMP,
        {"child": {"date_of_birth": "4201-03-14"}, "last_seen_at": "2026-01-01T09:00:00Z"},
    )
    response = await offline_client.post(
        "/v1/events",
        content=json.dumps(document),
        headers={**CE, **bearer(offline_tokens, Role.SYSTEM)},
    )
    problem = assert_problem(response, 422)
    assert [(e["field"], e["rule"]) for e in problem["errors"]] == [
        ("data.child.date_of_birth", "implausible_date_of_birth")
    ]
    assert "4201" not in response.text
