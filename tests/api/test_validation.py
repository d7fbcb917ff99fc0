"""Field rules come from the domain models; the API names the field path and the rule, and
never quotes the value (it may be a child's name or date of birth)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from mispers.api.envelope import parse_structured_object
from mispers.api.problems import ProblemError, field_problems, safe_message
from mispers.api.validation import check_type, to_event
from mispers.domain.events import EVENT_MODELS, Actor, EpisodeReported
from mispers.domain.types import Role
from testkit.factories import CHILD_NAME, DEFAULT_DATA, envelope, merge

ACTOR = Actor(subject="PC-1", role=Role.OFFICER)
STAMP = "2026-01-01T10:00:00Z"


def problem_for(document: dict[str, Any]) -> dict[str, Any]:
    item = parse_structured_object(document)
    with pytest.raises(ProblemError) as caught:
        check_type(item)
        to_event(item, ACTOR)
    problem = caught.value.problem.to_json()
    assert problem["status"] == 422
    return problem


def fields(problem: dict[str, Any]) -> dict[str, str]:
    return {e["field"]: e["rule"] for e in problem["errors"]}


@pytest.mark.parametrize("event_type", sorted(EVENT_MODELS))
def test_every_type_validates_and_carries_the_token_actor(event_type: str) -> None:
    event = to_event(parse_structured_object(envelope(event_type, "EP-1", STAMP)), ACTOR)
    assert event.type == event_type  # type: ignore[attr-defined]
    assert event.actor == ACTOR


def test_a_wrong_date_of_birth_is_named_by_path_without_its_value() -> None:
    secret_value = "Jessica 14th March"
    document = envelope(
        "episode.reported", "EP-1", STAMP, {"child": {"date_of_birth": secret_value}}
    )
    problem = problem_for(document)
    assert fields(problem) == {"data.child.date_of_birth": "date_from_datetime_parsing"}
    assert secret_value not in json.dumps(problem)
    assert "Jessica" not in json.dumps(problem)


def test_unknown_data_fields_are_refused() -> None:
    document = envelope("crime.recorded", "EP-1", STAMP, {"victim_name": CHILD_NAME})
    problem = problem_for(document)
    assert fields(problem) == {"data.victim_name": "extra_forbidden"}
    assert CHILD_NAME not in json.dumps(problem)


def test_missing_required_fields_are_each_named() -> None:
    data = dict(DEFAULT_DATA["mispers.episode.reported"])
    del data["officer_id"]
    data["child"] = {k: v for k, v in data["child"].items() if k != "looked_after"}
    document = envelope("episode.reported", "EP-1", STAMP)
    document["data"] = data
    problem = problem_for(document)
    assert fields(problem) == {"data.officer_id": "missing", "data.child.looked_after": "missing"}


def test_missing_data_is_a_field_problem() -> None:
    document = envelope("crime.recorded", "EP-1", STAMP)
    del document["data"]
    assert fields(problem_for(document)) == {"data": "missing"}


def test_list_items_are_named_by_index() -> None:
    document = envelope(
        "safe_and_well.completed",
        "EP-1",
        STAMP,
        {"disclosures": [{"kind": "other"}, {"kind": "gossip", "summary": CHILD_NAME}]},
    )
    problem = problem_for(document)
    assert fields(problem) == {"data.disclosures.1.kind": "literal_error"}
    assert CHILD_NAME not in json.dumps(problem)
    assert problem["errors"][0]["constraints"]["expected"].startswith("'sexual_activity'")


def test_model_rules_are_reported_on_their_object() -> None:
    document = envelope(
        "return_interview.completed", "EP-1", STAMP, {"outcome": "declined", "rationale": " "}
    )
    problem = problem_for(document)
    assert fields(problem) == {"data": "value_error"}
    assert "rationale is required" in problem["errors"][0]["message"]


def test_subject_must_be_an_episode_id() -> None:
    problem = problem_for(envelope("crime.recorded", "Jessica Testchild", STAMP))
    assert fields(problem) == {"subject": "string_pattern_mismatch"}
    assert "Jessica" not in json.dumps(problem)


def test_unknown_type_lists_the_known_ones_without_quoting_the_one_sent() -> None:
    document = envelope("crime.recorded", "EP-1", STAMP)
    document["type"] = "mispers.child.Jessica"
    problem = problem_for(document)
    assert fields(problem) == {"type": "unknown_event_type"}
    assert "Jessica" not in json.dumps(problem)
    assert "mispers.closure.approved" in problem["errors"][0]["constraints"]["expected"]


def test_time_attribute_is_checked_as_rfc3339_by_the_model() -> None:
    # ISO 8601 basic format: the SDK's parser reads it, RFC 3339 (the contract) does not.
    problem = problem_for(envelope("crime.recorded", "EP-1", "20260101T100000Z"))
    assert fields(problem) == {"time": "datetime_from_date_parsing"}


def test_safe_message_replaces_messages_that_quote_the_input() -> None:
    with pytest.raises(ValidationError) as caught:
        EpisodeReported.model_validate({"type": "mispers.episode.reported"})
    for error in caught.value.errors():
        assert safe_message(error)
    quoting = {"type": "x", "msg": "bad value 'Jessica Testchild'", "input": "Jessica Testchild"}
    assert "Jessica" not in safe_message(quoting)
    tag = {"type": "union_tag_invalid", "msg": "Input tag 'Jessica' found", "input": {}}
    assert "Jessica" not in safe_message(tag)


def test_long_unknown_field_names_are_cut_short() -> None:
    long_name = "n" * 500
    (problem,) = field_problems(
        [{"type": "extra_forbidden", "loc": ("data", long_name), "msg": "Extra inputs", "input": 1}]
    )
    assert len(problem.field) < 80


def test_valid_events_round_trip_to_the_domain_model() -> None:
    document = envelope(
        "episode.reported", "EP-1", STAMP, merge({}, {"initial_risk": "high"}), event_id="e-9"
    )
    event = to_event(parse_structured_object(document), ACTOR)
    assert isinstance(event, EpisodeReported)
    assert event.data.initial_risk.value == "high" and event.id == "e-9"
