"""Supervisor reads: the open-work list from Temporal visibility, one episode from its `state`
query, a child's record from its workflow's `state` query. Nothing is cached here: Temporal is
the system of record and answers each read. Each read is recorded in the access audit before it
is answered (a read the audit cannot record is answered 503, never served)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from mispers.api.access import record_access
from mispers.api.auth import Action
from mispers.api.context import get_context, require
from mispers.api.problems import (
    FieldProblem,
    ProblemError,
    engine_unavailable,
    invalid_parameter,
    not_found,
)
from mispers.domain.child_record import ChildRecordState
from mispers.domain.events import REF_PATTERN, Actor
from mispers.domain.state import EpisodeState, EpisodeSummary
from mispers.domain.types import EpisodeStatus, Flag, RiskLevel
from mispers.engine.client import (
    episodes_query,
    get_child_record,
    get_episode_state,
    list_episodes,
)
from mispers.security.audit import PURPOSE_HEADER, PURPOSE_MAX

T = TypeVar("T")
router = APIRouter()

Reader = Annotated[Actor, Depends(require(Action.READ))]
# Declared so the OpenAPI document states it; `record_access` reads it from the request.
Purpose = Annotated[
    str | None,
    Header(
        alias=PURPOSE_HEADER,
        max_length=PURPOSE_MAX,
        description="Why you read: free text, recorded as given in the access audit.",
    ),
]
_READ_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "No valid bearer token"},
    403: {"description": "The token's role may not read"},
    422: {"description": "A parameter breaks a rule"},
    503: {"description": "The workflow engine is unavailable"},
}


class EpisodeList(BaseModel):
    episodes: list[EpisodeSummary]
    next_page_token: str | None = Field(
        None, description="Pass as `page_token` for the next page; absent on the last page."
    )


@router.get(
    "/v1/episodes",
    response_model=EpisodeList,
    response_model_exclude_none=False,
    summary="Episodes matching the filters (Temporal visibility, paged)",
    responses=_READ_ERRORS,
)
async def list_episodes_endpoint(
    request: Request,
    actor: Reader,
    status: EpisodeStatus | None = None,
    risk: RiskLevel | None = None,
    overdue: Annotated[
        bool | None, Query(description="true: some obligation overdue; false: none")
    ] = None,
    child_ref: Annotated[str | None, Query(pattern=REF_PATTERN)] = None,
    flag: Annotated[Flag | None, Query(description="Episodes carrying this flag")] = None,
    open: Annotated[
        bool, Query(description="true: only episodes not closed (missing or found)")
    ] = False,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
    page_token: Annotated[str | None, Query(max_length=4096)] = None,
    _purpose: Purpose = None,
) -> EpisodeList:
    context = get_context(request)
    raw_token = _open_token(context.secret, page_token) if page_token else None
    client = await context.client()
    query = episodes_query(
        status=status, risk=risk, overdue=overdue, child_ref=child_ref, flag=flag, open_only=open
    )
    try:
        page = await list_episodes(client, query, page_size=page_size, page_token=raw_token)
    except RPCError as exc:
        if exc.status == RPCStatusCode.INVALID_ARGUMENT and page_token:
            raise _bad_token() from None
        raise engine_unavailable(f"visibility query failed ({exc.status.name})") from None
    token = page.next_page_token
    await record_access(
        request,
        actor,
        "list_episodes",
        episode_ids=[e.episode_id for e in page.episodes],
        child_refs=[e.child_ref for e in page.episodes if e.child_ref],
        detail={
            "status": status.value if status else None,
            "risk": risk.value if risk else None,
            "overdue": overdue,
            "child_ref": child_ref,
            "page_size": page_size,
            "next_page": page_token is not None,
            "returned": len(page.episodes),
        },
    )
    return EpisodeList(
        episodes=page.episodes,
        next_page_token=_seal_token(context.secret, token) if token else None,
    )


# Page tokens are the server's, sealed with our secret: a token we did not hand out is refused
# here, instead of reaching the visibility store (which answers garbage with retried errors).


def _token_mac(secret: bytes, raw: bytes) -> bytes:
    return hmac.new(secret, b"page-token\0" + raw, hashlib.sha256).digest()[:16]


def _seal_token(secret: bytes, raw: bytes) -> str:
    return base64.urlsafe_b64encode(_token_mac(secret, raw) + raw).decode()


def _open_token(secret: bytes, token: str) -> bytes:
    try:
        sealed = base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise _bad_token() from None
    mac, raw = sealed[:16], sealed[16:]
    if not raw or not hmac.compare_digest(mac, _token_mac(secret, raw)):
        raise _bad_token()
    return raw


def _bad_token() -> ProblemError:
    return invalid_parameter(
        [
            FieldProblem(
                field="page_token",
                rule="page_token",
                message="not a token from a previous answer's next_page_token",
            )
        ]
    )


@router.get(
    "/v1/episodes/{episode_id}",
    response_model=EpisodeState,
    summary="One episode's state (the workflow's `state` query)",
    responses={**_READ_ERRORS, 404: {"description": "No such episode"}},
)
async def get_episode(
    request: Request,
    actor: Reader,
    episode_id: Annotated[str, Path(pattern=REF_PATTERN)],
    _purpose: Purpose = None,
) -> EpisodeState:
    state = await _query(request, "the episode", get_episode_state, episode_id)
    await record_access(
        request,
        actor,
        "read_episode",
        episode_id=episode_id,
        child_ref=state.child_ref if state is not None else None,
        detail={"found": state is not None},
    )
    if state is None:
        raise not_found("episode-not-found", f"no episode {episode_id}", episode_id=episode_id)
    return state


@router.get(
    "/v1/children/{child_ref}",
    response_model=ChildRecordState,
    summary="A child's record: episodes, repeat counts, places found",
    responses={**_READ_ERRORS, 404: {"description": "No episode was ever reported for the child"}},
)
async def get_child(
    request: Request,
    actor: Reader,
    child_ref: Annotated[str, Path(pattern=REF_PATTERN)],
    _purpose: Purpose = None,
) -> ChildRecordState:
    record = await _query(request, "the child record", get_child_record, child_ref)
    await record_access(
        request,
        actor,
        "read_child",
        child_ref=child_ref,
        episode_ids=[e.episode_id for e in record.episodes] if record is not None else [],
        detail={"found": record is not None},
    )
    if record is None:
        raise not_found("child-not-found", f"no record for child {child_ref}")
    return record


async def _query(
    request: Request, what: str, read: Callable[[Client, str], Awaitable[T | None]], ref: str
) -> T | None:
    """A workflow's state by query; an engine that cannot answer is a 503, never a 500."""
    client = await get_context(request).client()
    try:
        return await read(client, ref)
    except (RPCError, WorkflowQueryFailedError) as exc:
        raise engine_unavailable(f"cannot query {what} ({type(exc).__name__})") from None
