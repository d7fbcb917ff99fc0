"""Operational endpoints: health (no token: probes carry none), metrics, and the published event
contract (JSON Schema per type)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from mispers.api.alerts import refresh_alert_gauge
from mispers.api.auth import Action
from mispers.api.context import get_context, require
from mispers.api.metrics import metrics_response
from mispers.api.problems import ProblemError
from mispers.domain.events import EVENT_MODELS, SUPERVISOR_ONLY_TYPES, Actor
from mispers.engine.client import engine_reachable

router = APIRouter()

Anyone = Annotated[Actor, Depends(require(Action.DESCRIBE))]
_AUTH_ERRORS: dict[int | str, dict[str, str]] = {401: {"description": "No valid bearer token"}}


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    engine: Literal["reachable", "unreachable"]


@router.get(
    "/healthz",
    response_model=Health,
    summary="Liveness and engine connectivity (no token needed)",
    responses={503: {"model": Health, "description": "The workflow engine is unreachable"}},
)
async def healthz(request: Request) -> JSONResponse:
    """503 while Temporal is unreachable, so a load balancer routes around this replica."""
    try:
        client = await get_context(request).client()
        reachable = await engine_reachable(client)
    except ProblemError:
        reachable = False
    body = Health(
        status="ok" if reachable else "degraded",
        engine="reachable" if reachable else "unreachable",
    )
    return JSONResponse(body.model_dump(), status_code=200 if reachable else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **_AUTH_ERRORS,
    },
)
async def metrics(_: Anyone, request: Request) -> Response:
    await refresh_alert_gauge(get_context(request))
    return await metrics_response(get_context(request).settings.worker_metrics_url)


class EventTypeSchema(BaseModel):
    type: str
    supervisor_only: bool
    data_schema: dict[str, Any]


class EventTypes(BaseModel):
    event_types: list[EventTypeSchema]


def _event_types() -> EventTypes:
    return EventTypes(
        event_types=[
            EventTypeSchema(
                type=name,
                supervisor_only=name in SUPERVISOR_ONLY_TYPES,
                # Fields marked "x-personal" are never logged nor quoted in error answers.
                data_schema=model.model_fields["data"].annotation.model_json_schema(),  # type: ignore[union-attr]
            )
            for name, model in sorted(EVENT_MODELS.items())
        ]
    )


_EVENT_TYPES = _event_types()


@router.get(
    "/v1/event-types",
    response_model=EventTypes,
    summary="Every accepted event type with the JSON Schema of its `data`",
    responses=_AUTH_ERRORS,
)
async def event_types(_: Anyone) -> EventTypes:
    return _EVENT_TYPES
