"""Alerts for the people paged: list them, acknowledge one, or follow the signed link an alert
carried (a page with one button: mail scanners and link previews follow GET links, so only the
POST acknowledges).

An acknowledgement here is the `mispers.alert.acknowledged` event of the token's subject (or of
the link's recipient), recorded by the episode like any other event."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import uuid
from collections import Counter
from typing import Annotated, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from prometheus_client import Gauge
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from mispers.api.access import record_access
from mispers.api.auth import Action
from mispers.api.context import ApiContext, get_context, require
from mispers.api.ingest import deliver, read_body
from mispers.api.problems import (
    FieldProblem,
    ProblemError,
    engine_unavailable,
    invalid_parameter,
    not_found,
)
from mispers.domain.events import REF_PATTERN, Actor, AlertAcknowledged, AlertAcknowledgedData
from mispers.domain.state import Alert, EpisodeState
from mispers.domain.types import AlertState, Rank, Role
from mispers.engine.alerts import AlertListItem, episode_candidates, list_alerts
from mispers.engine.client import get_episode_state, query_episode_state
from mispers.security import ack_links

router = APIRouter()

ALERTS_BY_STATE = Gauge(
    "mispers_alerts",
    "Alerts of running episodes by state (read from visibility at each scrape).",
    ["state"],
)
GAUGE_TIMEOUT = 2.0

Handler = Annotated[Actor, Depends(require(Action.HANDLE_ALERTS))]
LINK_SOURCE = "mispers/ack-link"
API_SOURCE = "mispers/api/alerts"
_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "No valid bearer token"},
    403: {"description": "The token's role may not handle alerts"},
    422: {"description": "A parameter breaks a rule"},
    503: {"description": "The workflow engine is unavailable"},
}


class AlertList(BaseModel):
    alerts: list[AlertListItem]
    next_page_token: str | None = Field(
        None, description="Pass as `page_token` for the next page; absent on the last page."
    )


@router.get(
    "/v1/alerts",
    response_model=AlertList,
    summary="Alerts matching the filters, newest first (visibility and memos, no replay)",
    responses=_ERRORS,
)
async def list_alerts_endpoint(
    request: Request,
    actor: Handler,
    state: AlertState | None = None,
    rank: Rank | None = None,
    episode_id: Annotated[str | None, Query(pattern=REF_PATTERN)] = None,
    recipient: Annotated[
        str | None, Query(max_length=200, description="A person id or e-mail address.")
    ] = None,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
    page_token: Annotated[str | None, Query(max_length=64)] = None,
) -> AlertList:
    context = get_context(request)
    offset = _open_offset(context.secret, page_token) if page_token else 0
    client = await context.client()
    try:
        alerts = await list_alerts(
            client, state=state, rank=rank, episode_id=episode_id, recipient=recipient
        )
    except RPCError as exc:
        raise engine_unavailable(f"visibility query failed ({exc.status.name})") from None
    page = alerts[offset : offset + page_size]
    more = offset + page_size < len(alerts)
    await record_access(
        request,
        actor,
        "list_alerts",
        episode_ids=[a.episode_id for a in page],
        detail={
            "state": state.value if state else None,
            "rank": rank.value if rank else None,
            "episode_id": episode_id,
            "recipient_given": recipient is not None,
            "returned": len(page),
        },
    )
    return AlertList(
        alerts=page,
        next_page_token=_seal_offset(context.secret, offset + page_size) if more else None,
    )


class AckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=1000, description="Kept in the timeline.")


class AckAnswer(BaseModel):
    alert_id: str
    episode_id: str
    status: Literal["accepted", "duplicate"]
    state: AlertState
    acknowledged_by: str | None
    acknowledged_at: dt.datetime | None
    ack_expires_at: dt.datetime | None
    ack_pauses_escalation: bool
    message: str


@router.post(
    "/v1/alerts/{alert_id}/ack",
    response_model=AckAnswer,
    summary="Acknowledge an alert as the token's subject",
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": AckRequest.model_json_schema()}},
        }
    },
    responses={
        **_ERRORS,
        404: {"description": "No such alert"},
        409: {"description": "The alert is resolved"},
    },
)
async def ack_endpoint(
    request: Request,
    actor: Handler,
    alert_id: Annotated[str, Path(min_length=1, max_length=300)],
) -> AckAnswer:
    body = await read_body(request, limit=16 * 1024)
    try:
        note = AckRequest.model_validate_json(body).note if body.strip() else None
    except ValueError:
        raise invalid_parameter(
            [FieldProblem(field="note", rule="ack_body", message='send {"note": "..."} or nothing')]
        ) from None
    context = get_context(request)
    episode_id, _ = await find_alert(context, alert_id)
    status = await acknowledge(
        context, episode_id, alert_id, actor, actor.subject, note, API_SOURCE
    )
    await _audit_ack(request, actor, episode_id, alert_id, status)
    return await _answer(context, episode_id, alert_id, actor.subject, status)


async def _audit_ack(
    request: Request, actor: Actor, episode_id: str, alert_id: str, status: str
) -> None:
    await record_access(
        request,
        actor,
        "event_accepted",
        episode_id=episode_id,
        detail={"type": "mispers.alert.acknowledged", "alert_id": alert_id, "status": status},
    )


async def find_alert(context: ApiContext, alert_id: str) -> tuple[str, Alert]:
    """The alert's episode and its current state; 404 when no episode raised it.

    The memo is read first (no replay); an alert it does not hold yet is asked of the episode
    itself: the page reaches its recipient from inside the workflow task that raised it, before
    that task's memo is written, and a person who acts on it at once must find it."""
    client = await context.client()
    for episode_id in episode_candidates(alert_id):
        for read in (get_episode_state, query_episode_state):
            try:
                state = await read(client, episode_id)
            except (RPCError, WorkflowQueryFailedError) as exc:
                if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
                    break
                raise engine_unavailable(
                    f"cannot query the episode ({type(exc).__name__})"
                ) from None
            alert = _alert_in(state, alert_id)
            if alert is not None:
                return episode_id, alert
    raise not_found("alert-not-found", f"no alert {alert_id} was raised")


async def acknowledge(
    context: ApiContext,
    episode_id: str,
    alert_id: str,
    actor: Actor,
    by: str,
    note: str | None,
    source: str,
) -> Literal["accepted", "duplicate"]:
    event = AlertAcknowledged(
        id=uuid.uuid4().hex,
        source=source,
        subject=episode_id,
        time=dt.datetime.now(dt.UTC),
        type="mispers.alert.acknowledged",
        data=AlertAcknowledgedData(alert_id=alert_id, by=by, note=note),
        actor=actor,
    )
    try:
        outcome = await deliver(context, event)
    except ProblemError as err:
        refusal = err.problem.refusal
        if refusal is not None and refusal.code == "unknown_alert":
            raise not_found("alert-not-found", refusal.message) from None
        raise
    return outcome.status


async def _answer(
    context: ApiContext, episode_id: str, alert_id: str, by: str, status: str
) -> AckAnswer:
    _, alert = await find_alert(context, alert_id)
    if alert.acknowledged_by != by:
        message = "recorded; the alert is held by an acknowledgement of its rank"
    elif alert.ack_pauses_escalation and alert.ack_expires_at is not None:
        message = (
            f"acknowledged: escalation paused until {alert.ack_expires_at:%Y-%m-%d %H:%M} UTC; "
            "if the obligation is still open then, the alert is triggered again and escalates"
        )
    else:
        message = (
            f"recorded, but it does not pause escalation: the alert is for the {alert.rank.value}"
            " and a lower rank cannot silence it"
        )
    return AckAnswer(
        alert_id=alert_id,
        episode_id=episode_id,
        status="duplicate" if status == "duplicate" else "accepted",
        state=alert.state,
        acknowledged_by=alert.acknowledged_by,
        acknowledged_at=alert.acknowledged_at,
        ack_expires_at=alert.ack_expires_at,
        ack_pauses_escalation=alert.ack_pauses_escalation,
        message=message,
    )


def _alert_in(state: EpisodeState | None, alert_id: str) -> Alert | None:
    if state is None:
        return None
    return next((a for a in state.alerts if a.alert_id == alert_id), None)


async def refresh_alert_gauge(context: ApiContext) -> None:
    """Counted at scrape time from the same index the listing reads; a slow or absent engine
    leaves the last figures (a scrape never fails for it)."""
    try:
        async with asyncio.timeout(GAUGE_TIMEOUT):
            client = await context.client()
            alerts = await list_alerts(client, running_only=True)
    except Exception:
        return
    counts = Counter(a.state for a in alerts)
    for state in AlertState:
        ALERTS_BY_STATE.labels(state=state.value).set(counts.get(state, 0))


# --- the signed link ------------------------------------------------------------------------


@router.get(ack_links.PATH, response_class=HTMLResponse, include_in_schema=False)
async def link_page(request: Request, token: str = "") -> HTMLResponse:
    """Shows what would be acknowledged and one button; acknowledges nothing."""
    context = get_context(request)
    try:
        link = ack_links.verify(context.secret, token, dt.datetime.now(dt.UTC))
        _, alert = await find_alert(context, link.alert_id)
    except ack_links.LinkRefused as refused:
        return _page("Link refused", refused.message, status=403)
    except ProblemError as err:
        return _page("Cannot acknowledge", err.problem.detail or err.problem.title, status=404)
    if alert.state is AlertState.RESOLVED:
        return _page("Nothing to acknowledge", _resolved(alert), status=409)
    if alert.state is AlertState.ACKNOWLEDGED and alert.acknowledged_by == link.person_id:
        return _page("Already acknowledged", _held(alert), status=200)
    detail = (
        f"Alert {alert.alert_id}: {alert.kind.value} was due "
        f"{alert.due_at:%Y-%m-%d %H:%M} UTC; escalated to the {alert.rank.value}. "
        f"Acknowledging as {link.person_id} is a promise to act."
    )
    form = (
        f'<form method="post" action="{ack_links.PATH}">'
        f'<input type="hidden" name="token" value="{html.escape(token)}">'
        '<button type="submit">Acknowledge this alert</button></form>'
    )
    return _page("Acknowledge this alert?", detail, status=200, extra=form)


@router.post(ack_links.PATH, response_class=HTMLResponse, include_in_schema=False)
async def link_acknowledge(request: Request) -> HTMLResponse:
    context = get_context(request)
    body = await read_body(request, limit=8 * 1024)
    token = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0]
    try:
        link = ack_links.verify(context.secret, token, dt.datetime.now(dt.UTC))
        episode_id, alert = await find_alert(context, link.alert_id)
        if alert.state is AlertState.RESOLVED:
            return _page("Nothing to acknowledge", _resolved(alert), status=409)
        # The link speaks for the person it was sent to, at the rank it paged.
        actor = Actor(subject=link.person_id, role=Role.SYSTEM)
        status = await acknowledge(
            context, episode_id, link.alert_id, actor, link.person_id, None, LINK_SOURCE
        )
        await _audit_ack(request, actor, episode_id, link.alert_id, status)
        _, alert = await find_alert(context, link.alert_id)
    except ack_links.LinkRefused as refused:
        return _page("Link refused", refused.message, status=403)
    except ProblemError as err:
        refusal = err.problem.refusal
        detail = refusal.message if refusal else (err.problem.detail or err.problem.title)
        return _page("Not acknowledged", detail, status=err.problem.status)
    if status == "duplicate":
        return _page("Already acknowledged", _held(alert), status=200)
    return _page("Acknowledged", _held(alert), status=200)


def _held(alert: Alert) -> str:
    until = (
        f" Escalation is paused until {alert.ack_expires_at:%Y-%m-%d %H:%M} UTC: if the "
        "obligation is still open then, the alert is triggered again."
        if alert.ack_expires_at
        else ""
    )
    return f"Alert {alert.alert_id} is acknowledged by {alert.acknowledged_by}.{until}"


def _resolved(alert: Alert) -> str:
    return (
        f"Alert {alert.alert_id} is resolved: its obligation was met or waived. "
        "This link has expired with it."
    )


def _page(title: str, detail: str, *, status: int, extra: str = "") -> HTMLResponse:
    text = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)} — Mispers</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(detail)}</p>{extra}</body></html>"
    )
    return HTMLResponse(
        text,
        status_code=status,
        headers={
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Robots-Tag": "noindex",
        },
    )


# --- page tokens: an offset sealed with our secret -------------------------------------------


def _seal_offset(secret: bytes, offset: int) -> str:
    import hashlib
    import hmac

    mac = hmac.new(secret, f"alerts-page\0{offset}".encode(), hashlib.sha256).hexdigest()[:16]
    return f"{offset}.{mac}"


def _open_offset(secret: bytes, token: str) -> int:
    offset, _, _ = token.partition(".")
    if offset.isdigit() and _seal_offset(secret, int(offset)) == token:
        return int(offset)
    raise invalid_parameter(
        [
            FieldProblem(
                field="page_token",
                rule="page_token",
                message="not a token from a previous answer's next_page_token",
            )
        ]
    )
