"""Finding CloudEvents in a request: the three HTTP modes and every way a body is malformed."""

from __future__ import annotations

import json
from datetime import datetime as _dt
from typing import Any

import pytest
from cloudevents.core.bindings.http import to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from mispers.api.envelope import (
    BATCH_MEDIA_TYPE,
    STRUCTURED_MEDIA_TYPE,
    Envelope,
    Mode,
    parse_request,
)
from mispers.api.problems import ProblemError
from testkit.factories import envelope

isoparse = _dt.fromisoformat

STAMP = "2026-01-01T10:00:00Z"


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def reported(**over: Any) -> dict[str, Any]:
    return {**envelope("episode.reported", "EP-1", STAMP, event_id="e-1"), **over}


def parse_one(headers: dict[str, str], raw: bytes) -> Envelope:
    mode, items = parse_request(headers, raw)
    assert mode is not Mode.BATCH
    (item,) = items
    assert isinstance(item, Envelope)
    return item


def problem_of(headers: dict[str, str], raw: bytes) -> dict[str, Any]:
    with pytest.raises(ProblemError) as caught:
        parse_request(headers, raw)
    return caught.value.problem.to_json()


def test_structured_mode_keeps_attributes_as_sent() -> None:
    item = parse_one({"content-type": STRUCTURED_MEDIA_TYPE}, body(reported()))
    assert item.attributes == {
        "id": "e-1",
        "source": "test/cad",
        "type": "mispers.episode.reported",
        "subject": "EP-1",
        "time": STAMP,
    }
    assert item.has_data and item.data["child"]["child_ref"] == "C-1"


def test_plain_json_object_is_read_as_structured_and_array_as_batch() -> None:
    assert (
        parse_request({"content-type": "application/json"}, body(reported()))[0] is Mode.STRUCTURED
    )
    assert parse_request({}, body([reported()]))[0] is Mode.BATCH


def test_content_type_parameters_are_ignored() -> None:
    item = parse_one({"content-type": f"{STRUCTURED_MEDIA_TYPE}; charset=utf-8"}, body(reported()))
    assert item.id == "e-1"


def test_binary_mode_reads_ce_headers_with_the_sdk() -> None:
    event = CloudEvent(
        {
            "id": "e-2",
            "source": "test/cad",
            "type": "mispers.crime.recorded",
            "subject": "EP-1",
            "time": isoparse(STAMP),
            "datacontenttype": "application/json",
        },
        {"crime_ref": "CR-1", "classification": "x", "officer_id": "PC-1"},
    )
    message = to_binary(event, JSONFormat())
    item = parse_one(message.headers, message.body)
    assert item.type == "mispers.crime.recorded"
    assert item.attributes["time"] == STAMP
    assert item.data == {"crime_ref": "CR-1", "classification": "x", "officer_id": "PC-1"}


def test_structured_message_from_the_sdk() -> None:
    document = reported()
    data = document.pop("data")
    document.pop("specversion")
    document["time"] = isoparse(STAMP)
    message = to_structured(CloudEvent(document, data), JSONFormat())
    item = parse_one(message.headers, message.body)
    assert item.subject == "EP-1"


def test_batch_judges_each_element_on_its_own() -> None:
    mode, items = parse_request(
        {"content-type": BATCH_MEDIA_TYPE}, body([reported(), 7, {"specversion": "1.0"}])
    )
    assert mode is Mode.BATCH
    assert isinstance(items[0], Envelope)
    assert isinstance(items[1], ProblemError) and items[1].problem.status == 400
    assert isinstance(items[2], ProblemError) and items[2].problem.status == 400


@pytest.mark.parametrize(
    "raw",
    [b"", b"   ", b"{not json", b'{"a": NaN}', b'{"a": 1e999}', b"\xff\xfe", b"[" * 100_000],
)
def test_malformed_bodies_are_400(raw: bytes) -> None:
    problem = problem_of({"content-type": STRUCTURED_MEDIA_TYPE}, raw)
    assert problem["status"] == 400


def test_batch_must_be_an_array() -> None:
    problem = problem_of({"content-type": BATCH_MEDIA_TYPE}, body(reported()))
    assert problem["status"] == 400 and "array" in problem["detail"]


@pytest.mark.parametrize("missing", ["specversion", "id", "source", "type", "subject", "time"])
def test_each_required_attribute_is_required(missing: str) -> None:
    document = reported()
    del document[missing]
    problem = problem_of({"content-type": STRUCTURED_MEDIA_TYPE}, body(document))
    assert problem["status"] == 400
    assert [e["field"] for e in problem["errors"]] == [missing]


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"specversion": "0.3"}, "specversion"),
        ({"id": ""}, "id"),
        ({"id": 5}, "id"),
        ({"time": "yesterday"}, "time"),
        ({"time": "2026-01-01T10:00:00"}, "time"),  # no offset
    ],
)
def test_envelope_rules_are_400_naming_the_attribute(over: dict[str, Any], field: str) -> None:
    problem = problem_of({"content-type": STRUCTURED_MEDIA_TYPE}, body(reported(**over)))
    assert problem["status"] == 400
    assert field in {e["field"] for e in problem.get("errors", [])} or field in problem["detail"]
    assert "yesterday" not in json.dumps(problem)


def test_unknown_attributes_are_refused_and_actor_cannot_be_sent() -> None:
    problem = problem_of(
        {"content-type": STRUCTURED_MEDIA_TYPE}, body(reported(actor="someone", colour="red"))
    )
    assert problem["status"] == 400
    assert {e["field"] for e in problem["errors"]} == {"actor", "colour"}


def test_tracing_extensions_are_accepted() -> None:
    item = parse_one(
        {"content-type": STRUCTURED_MEDIA_TYPE},
        body(reported(traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")),
    )
    assert "traceparent" not in item.attributes


def test_non_json_datacontenttype_is_refused() -> None:
    problem = problem_of(
        {"content-type": STRUCTURED_MEDIA_TYPE}, body(reported(datacontenttype="text/plain"))
    )
    assert problem["errors"][0]["field"] == "datacontenttype"


def test_missing_data_is_left_to_the_field_rules() -> None:
    document = reported()
    del document["data"]
    item = parse_one({"content-type": STRUCTURED_MEDIA_TYPE}, body(document))
    assert not item.has_data


def test_unknown_content_type_is_415() -> None:
    assert problem_of({"content-type": "text/plain"}, b"hello")["status"] == 415


def test_binary_mode_with_a_non_json_body_is_415_or_400() -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "e",
        "ce-source": "s",
        "ce-type": "mispers.crime.recorded",
        "ce-subject": "EP-1",
        "ce-time": STAMP,
    }
    assert problem_of({**headers, "content-type": "text/plain"}, b"x")["status"] == 415
    assert problem_of({**headers, "content-type": "application/json"}, b"{x")["status"] == 400
    missing = dict(headers)
    del missing["ce-time"]
    assert problem_of(missing, b"{}")["status"] == 400
