"""`POST /v1/events`: CloudEvents in, one engine call per event out.

Every decision about an event is someone else's: the envelope is the SDK's (envelope.py), the
fields are the domain models' (validation.py), the roles are auth.py's, and whether the episode
takes it is the workflow's Update validator. This module orders those steps and turns each
outcome into an HTTP answer.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from temporalio.client import (
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError

from mispers.api.auth import (
    Action,
    authorize_ack_by,
    authorize_event_type,
    authorize_risk_change,
    needs_risk_check,
)
from mispers.api.context import ApiContext, get_context, require
from mispers.api.envelope import Envelope, Mode, parse_request
from mispers.api.metrics import count_accepted, count_refused
from mispers.api.problems import (
    Problem,
    ProblemError,
    engine_unavailable,
    not_found,
    problem,
    refused,
    too_large,
)
from mispers.api.validation import check_type, to_event
from mispers.domain.events import REF_PATTERN, Actor, AlertAcknowledged, EventBase, RiskAssessed
from mispers.domain.refusals import Refusal
from mispers.domain.types import RiskLevel
from mispers.engine.client import (
    EpisodeNotFound,
    EventRejected,
    SubmitOutcome,
    get_episode_state,
    submit_event,
)
from mispers.logs import get_logger

log = get_logger("mispers.api.events")

MAX_BODY_BYTES = 1024 * 1024
# A client that overshoots is still read to this point, so it receives the 413 instead of a
# reset connection; beyond it the connection is simply closed after the answer.
_DRAIN_LIMIT = 16 * MAX_BODY_BYTES
# The engine answers an Update in ~100 ms; this bounds a request when no worker is polling.
SUBMIT_TIMEOUT = 30.0
# Episodes of one batch are sent in parallel (their events in order); 8 keeps a large batch
# from taking every worker slot from the other clients.
BATCH_CONCURRENCY = 8

_PRINTABLE_ID = re.compile(r"^[\x21-\x7e]{1,256}$")

router = APIRouter()


class EventAnswer(BaseModel):
    episode_id: str
    event_id: str
    status: Literal["accepted", "duplicate"]


class BatchItem(BaseModel):
    """One event's outcome in a batch answer, in the order the events were sent. An id is
    absent when the event had none shaped as an id (it is not echoed)."""

    episode_id: str | None = None
    event_id: str | None = None
    status: Literal["accepted", "duplicate", "rejected"]
    problem: Problem | None = None


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > _DRAIN_LIMIT:
        raise too_large(limit)
    body = bytearray()
    over = False
    async for chunk in request.stream():
        if over:
            if len(body) + len(chunk) > _DRAIN_LIMIT:
                break
            continue
        body += chunk
        if len(body) > limit:
            over = True
    if over:
        raise too_large(limit)
    return bytes(body)


@router.post(
    "/v1/events",
    status_code=202,
    summary="Record CloudEvents (structured, batch or binary mode)",
    response_model=EventAnswer | list[BatchItem],
    responses={
        400: {"description": "Malformed JSON or CloudEvents envelope"},
        401: {"description": "No valid bearer token"},
        403: {"description": "The token's role may not send this event"},
        404: {"description": "The episode was never reported"},
        409: {"description": "The episode's rules refuse the event"},
        413: {"description": "Body over 1 MiB"},
        415: {"description": "Not a CloudEvents content type"},
        422: {"description": "A field breaks a rule"},
        503: {"description": "The workflow engine is unavailable; sending again is safe"},
    },
)
async def post_events(
    request: Request, actor: Annotated[Actor, Depends(require(Action.SEND_EVENTS))]
) -> JSONResponse:
    """One event answers 202 `{episode_id, event_id, status}`; a batch answers 202 with one
    item per event, in order, each with its own outcome (a bad event does not lose others)."""
    context = get_context(request)
    try:
        body = await read_body(request)
        mode, items = parse_request(request.headers, body)
    except ProblemError as err:
        count_refused(None, err.reason)
        raise
    if mode is Mode.BATCH:
        answers = await record_batch(context, actor, items)
        return JSONResponse([a.model_dump(mode="json", exclude_none=True) for a in answers], 202)
    (item,) = items
    if isinstance(item, ProblemError):  # single-event modes raise instead; kept for the types
        raise item
    answer = await record(context, actor, item)
    return JSONResponse(answer.model_dump(mode="json"), status_code=202)


async def record(context: ApiContext, actor: Actor, envelope: Envelope) -> EventAnswer:
    event_type = envelope.type
    try:
        check_type(envelope)
        authorize_event_type(actor, event_type)
        event = to_event(envelope, actor)
        if isinstance(event, AlertAcknowledged):
            authorize_ack_by(actor, event.data.by)
        if isinstance(event, RiskAssessed) and needs_risk_check(actor, event_type):
            authorize_risk_change(
                actor, await _current_risk(context, event.subject), event.data.level
            )
        outcome = await _deliver(context, event)
    except ProblemError as err:
        _identify(err.problem, envelope)
        count_refused(event_type, err.reason)
        log.info(
            "event refused",
            type=_safe_type(event_type),
            episode_id=err.problem.episode_id,
            event_id=err.problem.event_id,
            status=err.problem.status,
            reason=err.reason,
            actor=actor.subject,
        )
        raise
    count_accepted(event_type, outcome.status)
    log.info(
        "event recorded",
        type=event_type,
        episode_id=outcome.episode_id,
        event_id=outcome.event_id,
        status=outcome.status,
        actor=actor.subject,
    )
    return EventAnswer(
        episode_id=outcome.episode_id, event_id=outcome.event_id, status=outcome.status
    )


async def record_batch(
    context: ApiContext, actor: Actor, items: list[Envelope | ProblemError]
) -> list[BatchItem]:
    """Events of one episode are recorded in the order sent (a report before its follow-ups);
    different episodes proceed in parallel."""
    answers: list[BatchItem | None] = [None] * len(items)
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        if isinstance(item, ProblemError):
            count_refused(None, item.reason)
            answers[index] = _rejected(item, None)
        else:
            groups.setdefault(item.subject or "", []).append(index)
    slots = asyncio.Semaphore(BATCH_CONCURRENCY)

    async def run(indexes: Iterable[int]) -> None:
        async with slots:
            for index in indexes:
                envelope = items[index]
                assert isinstance(envelope, Envelope)
                answers[index] = await _batch_item(context, actor, envelope)

    await asyncio.gather(*(run(indexes) for indexes in groups.values()))
    return [answer for answer in answers if answer is not None]


async def _batch_item(context: ApiContext, actor: Actor, envelope: Envelope) -> BatchItem:
    try:
        answer = await record(context, actor, envelope)
    except ProblemError as err:
        return _rejected(err, envelope)
    except Exception as exc:  # one broken event must not lose the batch's other answers
        log.error("event failed", error_type=type(exc).__name__, type=_safe_type(envelope.type))
        internal = problem(
            500, "internal", "Internal error", "the error was logged; sending again is safe"
        )
        return _rejected(internal, envelope)
    return BatchItem(episode_id=answer.episode_id, event_id=answer.event_id, status=answer.status)


def _rejected(err: ProblemError, envelope: Envelope | None) -> BatchItem:
    if envelope is not None:
        _identify(err.problem, envelope)
    return BatchItem(
        episode_id=err.problem.episode_id,
        event_id=err.problem.event_id,
        status="rejected",
        problem=err.problem,
    )


def _identify(target: Problem, envelope: Envelope) -> None:
    """Name the event a problem is about, when its ids are shaped as ids: an id that is not
    (a name typed into `subject`, say) is input we do not echo."""
    subject, event_id = envelope.subject, envelope.id
    if target.episode_id is None and subject and re.fullmatch(REF_PATTERN, subject):
        target.episode_id = subject
    if target.event_id is None and event_id and _PRINTABLE_ID.fullmatch(event_id):
        target.event_id = event_id


def _safe_type(event_type: str) -> str:
    return event_type if _PRINTABLE_ID.fullmatch(event_type) and len(event_type) <= 64 else "?"


async def _current_risk(context: ApiContext, episode_id: str) -> RiskLevel | None:
    client = await context.client()
    try:
        state = await get_episode_state(client, episode_id)
    except (RPCError, WorkflowQueryFailedError) as exc:
        raise engine_unavailable(
            f"cannot read episode {episode_id}: {type(exc).__name__}"
        ) from None
    return state.risk.level if state is not None and state.risk is not None else None


async def deliver(context: ApiContext, event: EventBase) -> SubmitOutcome:
    """One validated event to its episode, engine failures answered as problems."""
    return await _deliver(context, event)


async def _deliver(context: ApiContext, event: EventBase) -> SubmitOutcome:
    client = await context.client()
    try:
        async with asyncio.timeout(SUBMIT_TIMEOUT):
            return await submit_event(
                client, event, context.policy, task_queue=context.settings.task_queue
            )
    except EpisodeNotFound:
        raise not_found(
            "episode-not-found",
            f"episode {event.subject} was never reported (send mispers.episode.reported first)",
            episode_id=event.subject,
        ) from None
    except EventRejected as exc:
        raise refused(exc.refusal) from None
    except TimeoutError:
        raise engine_unavailable(
            f"no answer from the engine within {SUBMIT_TIMEOUT:g} s; sending again is safe"
        ) from None
    except WorkflowUpdateFailedError as exc:
        # Not a refusal the rules named: the failure's type only (its message may quote input).
        cause = type(exc.cause).__name__ if exc.cause else "unknown"
        raise refused(
            Refusal(
                code="update_failed",
                message=f"the episode did not record the event ({cause})",
                details={"cause": cause},
            )
        ) from None
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise engine_unavailable(
            "the engine did not answer in time; sending again is safe"
        ) from None
    except RPCError as exc:
        raise engine_unavailable(f"the engine refused the call ({exc.status.name})") from None
