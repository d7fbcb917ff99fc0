"""Log redaction and safe error answers: personal fields never reach a log line or an answer."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import Iterator
from typing import Any, Literal

import pytest
import structlog
from pydantic import BaseModel, ValidationError

from mispers.domain import events
from mispers.domain.events import EpisodeReported, EventBase, Strict, personal
from mispers.logs import configure_logging, shared_processors
from mispers.security.redaction import (
    REDACTED,
    Redactor,
    personal_names,
    redact,
    redact_processor,
    redact_text,
    safe_error_detail,
    safe_errors,
)
from tests.security.test_codec import NAME, POSTCODE

DOB = "2011-04-17"


def reported_event() -> EpisodeReported:
    return EpisodeReported.model_validate(
        {
            "id": "ev-1",
            "source": "cad",
            "subject": "EP-1",
            "time": "2026-11-01T20:10:00Z",
            "type": "mispers.episode.reported",
            "data": {
                "child": {
                    "child_ref": "C-1001",
                    "date_of_birth": DOB,
                    "name": NAME,
                    "looked_after": True,
                },
                "last_seen_at": "2026-11-01T20:00:00Z",
                "last_seen_location": {"description": "the canal path", "postcode": POSTCODE},
                "initial_risk": "high",
                "reported_by": {"role": "carer"},
                "officer_id": "PC-7",
                "circumstances": "left after an argument",
            },
        }
    )


SECRETS = (NAME, POSTCODE, DOB, "canal path", "argument", "2011, 4, 17")


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into {text!r}"


def run(event_dict: dict[str, Any]) -> dict[str, Any]:
    return dict(redact_processor(None, "info", event_dict))


def test_nested_personal_fields_are_redacted_and_the_rest_kept() -> None:
    given: dict[str, Any] = {
        "event": "episode reported",
        "episode_id": "EP-1",
        "payload": {
            "child": {"child_ref": "C-1001", "name": NAME, "date_of_birth": DOB},
            "sightings": [{"location": {"postcode": POSTCODE}}, {"Postcode": POSTCODE}],
            "rationale": "seen with an adult of concern",
        },
        "dateOfBirth": DOB,
    }
    out = run(given)
    assert out["episode_id"] == "EP-1"
    assert out["payload"]["child"] == {
        "child_ref": "C-1001",
        "name": REDACTED,
        "date_of_birth": REDACTED,
    }
    assert out["payload"]["sightings"] == [{"location": REDACTED}, {"Postcode": REDACTED}]
    assert out["payload"]["rationale"] == REDACTED
    assert out["dateOfBirth"] == REDACTED
    assert given["payload"]["child"]["name"] == NAME  # the caller's dict is untouched
    assert_clean(json.dumps(out))


def test_pydantic_events_are_redacted_by_their_marking() -> None:
    out = run({"event": "received", "ce": reported_event()})
    data = out["ce"]["data"]
    assert data["child"]["child_ref"] == "C-1001"
    assert data["child"]["looked_after"] is True
    assert data["child"]["name"] == REDACTED
    assert data["last_seen_location"] == REDACTED
    assert data["circumstances"] == REDACTED
    assert data["officer_id"] == "PC-7"
    assert_clean(json.dumps(out, default=str))


class Contact(Strict):
    phone_number_of_foster_carer: str = personal()  # a newly marked personal field
    agency: str


class Note(BaseModel):
    contacts: list[Contact]


def test_a_newly_marked_personal_field_is_redacted_without_touching_logging() -> None:
    note = Note(contacts=[Contact(phone_number_of_foster_carer="07700 900123", agency="LA")])
    out = run({"event": "note", "wrapper": {"notes_list": [note]}})
    assert out["wrapper"]["notes_list"][0]["contacts"][0] == {
        "phone_number_of_foster_carer": REDACTED,
        "agency": "LA",
    }
    assert "900123" not in json.dumps(out)


class NewFieldData(Strict):
    school_attended: str = personal()


class NewFieldEvent(EventBase):
    type: Literal["mispers.test.new_field"]
    data: NewFieldData


def test_a_personal_field_added_to_the_contract_is_redacted_in_plain_dicts_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(events.EVENT_MODELS, "mispers.test.new_field", NewFieldEvent)
    assert "school_attended" in personal_names()
    out = Redactor(personal_names()).process({"data": {"school_attended": "St Ives Academy"}})
    assert out["data"] == {"school_attended": REDACTED}


def test_free_text_spans_naming_personal_fields_and_postcodes_are_redacted() -> None:
    text = (
        f"Child(child_ref='C-1001', date_of_birth=datetime.date(2011, 4, 17), name='{NAME}') "
        f'{{"postcode": "{POSTCODE}"}} found near {POSTCODE.lower()} and SW1A 1AA'
    )
    out = redact_text(text)
    assert "child_ref='C-1001'" in out
    assert_clean(out)
    assert "sw1a 1aa" not in out.lower()
    assert "zz9 9qq" not in out.lower()
    # Ordinary identifiers and times survive.
    assert redact_text("episode-EP-1 at 2026-11-01T20:00:00Z run 0196f3a2-c9e3") == (
        "episode-EP-1 at 2026-11-01T20:00:00Z run 0196f3a2-c9e3"
    )


def test_exceptions_are_rendered_with_redacted_messages() -> None:
    try:
        EpisodeReported.model_validate(
            {**reported_event().model_dump(mode="json"), "time": "not a time"}
        )
    except ValidationError:
        out = run({"event": "refused", "exc_info": True})
    assert "exc_info" not in out
    assert "time: " in out["exception"]
    assert "Traceback" in out["exception"]
    assert_clean(out["exception"])

    try:
        try:
            raise KeyError(f"name={NAME!r}")
        except KeyError as inner:
            raise RuntimeError(f"lookup failed at {POSTCODE}") from inner
    except RuntimeError as exc:
        out = run({"event": "failed", "exc_info": exc})
    assert "RuntimeError" in out["exception"] and "KeyError" in out["exception"]
    assert_clean(out["exception"])


def test_safe_errors_never_echo_the_input() -> None:
    raw = reported_event().model_dump(mode="json")
    raw["data"]["child"]["date_of_birth"] = f"{NAME} {POSTCODE}"
    with pytest.raises(ValidationError) as info:
        EpisodeReported.model_validate(raw)
    errors = info.value.errors()
    assert any(NAME in str(e) for e in errors)  # pydantic's own errors carry the input
    safe = safe_errors(errors)
    assert safe[0]["loc"] == ["data", "child", "date_of_birth"]
    assert "input" not in safe[0]
    assert_clean(json.dumps(safe))
    assert_clean(json.dumps(safe_error_detail(info.value)))
    assert_clean(str(safe_error_detail(ValueError(f"bad name={NAME!r} at {POSTCODE}"))))


def test_limits_in_error_context_are_kept() -> None:
    class Short(BaseModel):
        officer_id: str

        model_config = {"str_max_length": 3}

    with pytest.raises(ValidationError) as info:
        Short(officer_id="PC-12345")
    [error] = safe_errors(info.value.errors())
    assert error["ctx"] == {"max_length": 3}


def test_redact_handles_odd_values() -> None:
    assert redact(b"\x00\x01") == "[2 bytes]"
    assert redact({"when": dt.date(2026, 4, 17)}) == {"when": "2026-04-17"}
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(30):
        cursor["next"] = {}
        cursor = cursor["next"]
    redact(deep)  # no recursion error


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    configure_logging("info")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    root_level = logging.getLogger().level
    logging.getLogger().setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        handler.setStream(previous)
        logging.getLogger().setLevel(root_level)


def test_every_log_path_through_the_configured_logging_is_redacted(
    captured_logs: io.StringIO,
) -> None:
    assert redact_processor in shared_processors()
    log = structlog.get_logger("mispers.test")
    event = reported_event()
    log.info("episode reported", ce=event, child=event.data.child.model_dump())
    with structlog.contextvars.bound_contextvars(postcode=POSTCODE):
        log.warning("sighting")
    # stdlib records (temporalio, uvicorn) with extra= fields and exceptions.
    logging.getLogger("temporalio.worker").info(
        "activity failed", extra={"details": {"name": NAME}}
    )
    try:
        raise ValueError(f"name={NAME!r} date_of_birth={DOB}")
    except ValueError:
        logging.getLogger("uvicorn.error").exception("request failed")
        log.exception("handler failed")

    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    assert len(lines) == 5
    assert lines[0]["ce"]["data"]["child"]["child_ref"] == "C-1001"
    assert lines[1]["postcode"] == REDACTED
    assert lines[2]["details"] == {"name": REDACTED}
    assert "ValueError" in lines[3]["exception"] and "ValueError" in lines[4]["exception"]
    assert_clean(captured_logs.getvalue())
