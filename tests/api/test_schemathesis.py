"""Property tests of the HTTP API against its own OpenAPI document.

Schemathesis reads `/openapi.json` from the running API of the `stack` fixture (dev server,
worker, API under uvicorn) and, for every operation it lists, sends generated requests over real
HTTP with a supervisor's token: requests that fit the schema and requests that break it. Every
answer must be no 5xx, carry a status code the document lists for the operation, in the media
type it lists, with a body matching its schema.

The stack runs on the session's event loop, so the (synchronous) schemathesis client runs in a
thread while the test awaits it: the loop keeps serving the API and the worker meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mispers.domain.types import Role
from tests.api.conftest import Stack

pytestmark = pytest.mark.integration

# Every operation of the document: a new one must be added here (test_every_operation_is_covered).
OPERATIONS = (
    "POST /v1/events",
    "GET /v1/episodes",
    "GET /v1/episodes/{episode_id}",
    "GET /v1/children/{child_ref}",
    "GET /v1/event-types",
    "GET /v1/reports/compliance",
    "GET /v1/alerts",
    "POST /v1/alerts/{alert_id}/ack",
    "GET /metrics",
    "GET /healthz",
    "GET /v1/audit",
)
# The role each operation is driven with: one allowed to call it (the audit is the auditor's).
ROLE_FOR = {"GET /v1/audit": Role.AUDITOR}
# Requests per operation, schema-valid and schema-breaking ones together: the module's tests take
# about 25 s on two shared cores, plus the stack's start-up when it is the first to use it
# (POST /v1/events starts real workflows). GET /healthz, without parameters, needs one request.
MAX_EXAMPLES = 50
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
REQUEST_TIMEOUT = 60.0

_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,  # nothing written under the repository; failures print their case instead
    derandomize=False,
    phases=[Phase.explicit, Phase.generate],  # shrinking against a live server is unbounded
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)


@pytest.fixture(scope="module")
async def api_schema(stack: Stack) -> schemathesis.BaseSchema:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return schemathesis.openapi.from_dict(document)


def _labels(schema: schemathesis.BaseSchema) -> set[str]:
    labels = set()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # an operation schemathesis cannot read
        labels.add(result.ok().label)
    return labels


async def test_every_operation_is_covered(api_schema: schemathesis.BaseSchema) -> None:
    assert _labels(api_schema) == set(OPERATIONS)


def _property_test(
    schema: schemathesis.BaseSchema, label: str, base_url: str, token: str
) -> Callable[[], None]:
    method, path = label.split(" ", 1)
    operation = schema[path][method]
    strategy = st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )
    session = requests.Session()
    headers = {"authorization": f"Bearer {token}"}
    subject = jwt.decode(token, options={"verify_signature": False})["sub"]

    @_SETTINGS
    @given(case=strategy)
    def check(case: schemathesis.Case[Any]) -> None:
        response = case.call_and_validate(
            base_url=base_url,
            session=session,
            headers=headers,
            checks=CHECKS,
            timeout=REQUEST_TIMEOUT,
        )
        if case.meta is not None and case.meta.generation.mode.is_positive:
            # A schema-valid request with an allowed role's token is never refused for its
            # token: otherwise every answer would be a 401 and the run would prove nothing.
            # The 403s it may meet: the episode's refusal of a rank in the generated data above
            # the token's (a supervisor's token holds sergeant; the data may claim more), and an
            # acknowledgement whose generated `by` is not the token's subject.
            assert response.status_code != 401, case.as_curl_command()
            if response.status_code == 403:
                assert _refusal_code(response) == "rank_above_token" or _acknowledges_for_another(
                    case.body, subject
                ), case.as_curl_command()

    def run() -> None:
        with session:
            check()

    return run


def _acknowledges_for_another(body: object, subject: str) -> bool:
    if not isinstance(body, dict) or body.get("type") != "mispers.alert.acknowledged":
        return False
    data = body.get("data")
    return isinstance(data, dict) and data.get("by") != subject


def _refusal_code(response: Any) -> object:
    body = response.json()
    refusal = body.get("refusal") if isinstance(body, dict) else None
    return refusal.get("code") if isinstance(refusal, dict) else None


@pytest.mark.parametrize("label", OPERATIONS)
async def test_operation_conforms_to_schema(
    stack: Stack, api_schema: schemathesis.BaseSchema, label: str
) -> None:
    role = ROLE_FOR.get(label, Role.SUPERVISOR)
    run = _property_test(api_schema, label, stack.url, stack.tokens[role])
    await asyncio.to_thread(run)
