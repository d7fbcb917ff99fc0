"""The OpenAPI description, completed where FastAPI cannot infer it: the CloudEvents request
body (read by hand, in three content types) and problem+json on every error answer. Clients and
schemathesis check the service against this document, so it must say what the code does."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from mispers.api.envelope import BATCH_MEDIA_TYPE, JSON_MEDIA_TYPE, STRUCTURED_MEDIA_TYPE
from mispers.api.problems import PROBLEM_MEDIA_TYPE, Problem
from mispers.domain.events import EVENT_MODELS, AnyEvent

_SCHEMAS = "#/components/schemas/"
_EVENT_PREFIX = "Event_"
EVENTS_PATH = "/v1/events"

_ENVELOPE_EXTRAS: dict[str, Any] = {
    "specversion": {"type": "string", "const": "1.0"},
    "datacontenttype": {"type": "string", "enum": [JSON_MEDIA_TYPE]},
    "dataschema": {"type": "string", "format": "uri"},
    "traceparent": {"type": "string"},
    "tracestate": {"type": "string"},
}
_REQUIRED = ["specversion", "id", "source", "type", "subject", "time", "data"]


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    _add_problem(document, schemas)
    _add_event_body(document, schemas)
    app.openapi_schema = document
    return document


def _add_problem(document: dict[str, Any], schemas: dict[str, Any]) -> None:
    problem_schema = Problem.model_json_schema(ref_template=_SCHEMAS + "{model}")
    schemas.update(problem_schema.pop("$defs", {}))
    schemas["Problem"] = problem_schema
    content = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _SCHEMAS + "Problem"}}}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for code, response in operation.get("responses", {}).items():
                if code.isdigit() and int(code) >= 400 and not _has_model(response):
                    response["content"] = content
    # FastAPI's own 422 shape is never answered (every error is problem+json).
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def _has_model(response: dict[str, Any]) -> bool:
    """True when the route declared a body model for this answer (healthz's 503)."""
    return any("$ref" in media.get("schema", {}) for media in response.get("content", {}).values())


def _add_event_body(document: dict[str, Any], schemas: dict[str, Any]) -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(AnyEvent)
    union = adapter.json_schema(ref_template=_SCHEMAS + _EVENT_PREFIX + "{model}")
    definitions: dict[str, Any] = union.pop("$defs", {})
    event_names = {model.__name__ for model in EVENT_MODELS.values()}
    for name, schema in definitions.items():
        if name in event_names:
            properties = schema.setdefault("properties", {})
            # The actor is the bearer token's: a client cannot send one.
            properties.pop("actor", None)
            properties.update(_ENVELOPE_EXTRAS)
            schema["required"] = _REQUIRED
        schemas[_EVENT_PREFIX + name] = schema
    schemas["CloudEvent"] = union
    event_ref = {"$ref": _SCHEMAS + "CloudEvent"}
    batch = {"type": "array", "items": event_ref}
    operation = document["paths"][EVENTS_PATH]["post"]
    operation["requestBody"] = {
        "required": True,
        "content": {
            STRUCTURED_MEDIA_TYPE: {"schema": event_ref},
            BATCH_MEDIA_TYPE: {"schema": batch},
            JSON_MEDIA_TYPE: {"schema": {"oneOf": [event_ref, batch]}},
        },
    }
