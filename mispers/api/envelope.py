"""CloudEvents 1.0 over HTTP: finding the events in a request (structured, batch, binary mode).

The `cloudevents` SDK reads the envelope (JSON format, `ce-*` header decoding, the spec's
attribute rules). Around it we add what the SDK is lenient about and our contract is not: the SDK
invents an `id` and a `time` when they are missing, and falls back to text when a JSON body does
not parse; here both are malformed requests (400). What the fields mean is not decided here
(validation.py): this module only answers "is there a well-formed CloudEvent".
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import unquote

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_binary, from_structured
from cloudevents.core.exceptions import BaseCloudEventException, CloudEventValidationError
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from mispers.api.problems import (
    FieldProblem,
    ProblemError,
    invalid_envelope,
    malformed,
    unsupported_media_type,
)

STRUCTURED_MEDIA_TYPE = "application/cloudevents+json"
BATCH_MEDIA_TYPE = "application/cloudevents-batch+json"
JSON_MEDIA_TYPE = "application/json"

# The contract (docs/contract.md) makes `subject` and `time` required too (the SDK treats them
# as optional).
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type", "subject", "time")
# Optional attributes of the spec we accept and ignore; any other extension is refused, like
# unknown fields everywhere else (and `actor` in particular: it comes from the token).
IGNORED_ATTRIBUTES = frozenset({"datacontenttype", "dataschema", "traceparent", "tracestate"})
# Attributes the domain models read; `time` is passed as sent so its RFC 3339 rule is pydantic's.
EVENT_ATTRIBUTES = ("id", "source", "type", "subject", "time")

_FORMAT = JSONFormat()


class Mode(StrEnum):
    STRUCTURED = "structured"
    BATCH = "batch"
    BINARY = "binary"


@dataclass(frozen=True)
class Envelope:
    """One well-formed CloudEvent: the attributes the domain reads, and `data` as sent."""

    attributes: dict[str, Any]
    data: Any
    has_data: bool

    @property
    def type(self) -> str:
        return str(self.attributes.get("type", ""))

    @property
    def id(self) -> str | None:
        value = self.attributes.get("id")
        return value if isinstance(value, str) else None

    @property
    def subject(self) -> str | None:
        value = self.attributes.get("subject")
        return value if isinstance(value, str) else None


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json_media_type(media: str) -> bool:
    return media == JSON_MEDIA_TYPE or (
        media.startswith("application/") and media.endswith("+json")
    )


def detect_mode(headers: Mapping[str, str], body: bytes) -> Mode:
    """The content type decides (the spec's rule); `ce-*` headers mean binary mode; plain JSON
    without them is read as structured (an object) or batch (an array) for simple clients."""
    media = media_type(headers.get("content-type"))
    if media == BATCH_MEDIA_TYPE:
        return Mode.BATCH
    if media == STRUCTURED_MEDIA_TYPE:
        return Mode.STRUCTURED
    if any(name.lower().startswith("ce-") for name in headers):
        if media and not is_json_media_type(media):
            raise unsupported_media_type("binary-mode events must carry a JSON body")
        return Mode.BINARY
    if media in ("", JSON_MEDIA_TYPE):
        return Mode.BATCH if body.lstrip()[:1] == b"[" else Mode.STRUCTURED
    raise unsupported_media_type(
        f"send {STRUCTURED_MEDIA_TYPE}, {BATCH_MEDIA_TYPE}, or binary mode (ce-* headers)"
    )


def parse_request(
    headers: Mapping[str, str], body: bytes
) -> tuple[Mode, list[Envelope | ProblemError]]:
    """The events of a request. A malformed request raises; in a batch each element is judged on
    its own, so one bad event does not lose the others."""
    mode = detect_mode(headers, body)
    if mode is Mode.BINARY:
        return mode, [parse_binary(headers, body)]
    document = load_json(body)
    if mode is Mode.BATCH:
        if not isinstance(document, list):
            raise malformed("a batch is a JSON array of CloudEvents")
        return mode, [_element(item) for item in document]
    return mode, [parse_structured_object(document)]


def _element(item: Any) -> Envelope | ProblemError:
    try:
        return parse_structured_object(item)
    except ProblemError as err:
        return err


def load_json(body: bytes) -> Any:
    if not body.strip():
        raise malformed("the body is empty")
    try:
        return json.loads(
            body.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float
        )
    except UnicodeDecodeError:
        raise malformed("the body is not UTF-8") from None
    except RecursionError:
        raise malformed("the JSON is nested too deeply") from None
    except json.JSONDecodeError as exc:
        # The position only (line, column), never the text around it.
        raise malformed(
            f"the body is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError:
        raise malformed(
            "the body is not valid JSON (NaN, Infinity or out-of-range number)"
        ) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def parse_structured_object(document: Any) -> Envelope:
    if not isinstance(document, dict):
        raise malformed("a CloudEvent is a JSON object")
    _check_required(document.keys(), document)
    try:
        # Re-encoding a parsed object is cheap next to one Temporal round trip, and lets the
        # SDK read the envelope exactly as it reads a structured-mode body.
        event = from_structured(
            HTTPMessage(
                headers={"content-type": STRUCTURED_MEDIA_TYPE}, body=json.dumps(document).encode()
            ),
            _FORMAT,
            CloudEvent,
        )
    except Exception as exc:  # the SDK raises ValueError/TypeError subclasses and its own
        raise _sdk_problem(exc) from None
    raw = {name: document[name] for name in EVENT_ATTRIBUTES}
    return _envelope(event, raw, data=document.get("data"), has_data="data" in document)


def parse_binary(headers: Mapping[str, str], body: bytes) -> Envelope:
    lowered = {name.lower(): value for name, value in headers.items()}
    present = {name[3:] for name in lowered if name.startswith("ce-")}
    _check_required(present, None)
    has_data = bool(body.strip())
    data = load_json(body) if has_data else None
    ce_headers = {name: value for name, value in lowered.items() if name.startswith("ce-")}
    if "content-type" in lowered:
        ce_headers["content-type"] = lowered["content-type"]
    try:
        event = from_binary(HTTPMessage(headers=ce_headers, body=body), _FORMAT, CloudEvent)
    except Exception as exc:
        raise _sdk_problem(exc) from None
    raw = {name: unquote(lowered[f"ce-{name}"]) for name in EVENT_ATTRIBUTES}
    return _envelope(event, raw, data=data, has_data=has_data)


def _check_required(present: Any, document: Mapping[str, Any] | None) -> None:
    missing = [name for name in REQUIRED_ATTRIBUTES if name not in present]
    if missing:
        raise invalid_envelope(
            "missing required attribute(s): " + ", ".join(missing),
            [
                FieldProblem(field=name, rule="missing", message="Field required")
                for name in missing
            ],
        )
    if document is not None:
        wrong = [name for name in REQUIRED_ATTRIBUTES if not isinstance(document[name], str)]
        if wrong:
            raise invalid_envelope(
                "attribute(s) must be strings: " + ", ".join(wrong),
                [
                    FieldProblem(field=n, rule="string_type", message="must be a string")
                    for n in wrong
                ],
            )


def _envelope(event: BaseCloudEvent, raw: dict[str, Any], data: Any, has_data: bool) -> Envelope:
    attributes = event.get_attributes()
    extensions = sorted(
        name
        for name in attributes
        if name not in REQUIRED_ATTRIBUTES and name not in IGNORED_ATTRIBUTES
    )
    if extensions:
        raise invalid_envelope(
            "unknown attribute(s): " + ", ".join(extensions),
            [
                FieldProblem(
                    field=name,
                    rule="extra_forbidden",
                    message="unknown attributes are refused (the actor comes from the token)"
                    if name == "actor"
                    else "unknown attributes are refused",
                )
                for name in extensions
            ],
        )
    content_type = attributes.get("datacontenttype")
    if content_type is not None and not is_json_media_type(media_type(str(content_type))):
        raise invalid_envelope(
            "datacontenttype must be application/json",
            [FieldProblem(field="datacontenttype", rule="json_required", message="data is JSON")],
        )
    return Envelope(attributes=raw, data=data, has_data=has_data)


def _sdk_problem(exc: Exception) -> ProblemError:
    """The SDK's messages name attributes and rules; messages it passes on from parsers (dates)
    may quote the value, so those are replaced by the attribute's name."""
    if isinstance(exc, CloudEventValidationError):
        errors = [
            FieldProblem(field=name, rule=type(err).__name__, message=str(err))
            for name, errs in exc.errors.items()
            for err in errs
        ]
        return invalid_envelope("; ".join(f"{e.field}: {e.message}" for e in errors), errors)
    if isinstance(exc, BaseCloudEventException):
        name = getattr(exc, "attribute_name", "envelope")
        return invalid_envelope(f"{name}: invalid attribute")
    # Anything else comes from parsing `time` (dateutil): the only attribute the SDK converts.
    return invalid_envelope(
        "time: not an RFC 3339 timestamp",
        [FieldProblem(field="time", rule="datetime_parsing", message="not an RFC 3339 timestamp")],
    )
