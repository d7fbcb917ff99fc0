"""`GET /v1/audit`: the access audit, for the `auditor` role only.

The same records `mispers audit` shows, filtered the same way (`select`); this read is itself
recorded, so an auditor's look at who looked at a child is on the record too."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel

from mispers.api.access import record_access, request_sink
from mispers.api.auth import Action
from mispers.api.context import require
from mispers.api.reads import Purpose
from mispers.domain.events import REF_PATTERN, Actor
from mispers.security.audit import AuditRecord, read_records, select

router = APIRouter()

Auditor = Annotated[Actor, Depends(require(Action.READ_AUDIT))]
MAX_RECORDS = 10_000


class AuditAnswer(BaseModel):
    records: list[AuditRecord]
    truncated: bool = False


@router.get(
    "/v1/audit",
    response_model=AuditAnswer,
    response_model_by_alias=True,
    summary="Access audit records (auditor role only), oldest first",
    responses={
        401: {"description": "No valid bearer token"},
        403: {"description": "Only the auditor role reads the audit"},
        422: {"description": "A parameter breaks a rule"},
        503: {"description": "The access audit cannot be written"},
    },
)
async def get_audit(
    request: Request,
    actor: Auditor,
    child_ref: Annotated[str | None, Query(pattern=REF_PATTERN)] = None,
    episode_id: Annotated[str | None, Query(pattern=REF_PATTERN)] = None,
    subject: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    _purpose: Purpose = None,
) -> AuditAnswer:
    """The newest 10,000 matching records at most (`truncated` says when more matched)."""
    return await audit_records(
        request,
        actor,
        child_ref=child_ref,
        episode_id=episode_id,
        subject=subject,
        since=since,
        until=until,
    )


async def audit_records(
    request: Request,
    actor: Actor,
    *,
    child_ref: str | None = None,
    episode_id: str | None = None,
    subject: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> AuditAnswer:
    """The one way the audit is read for a person (this endpoint and the dashboard's audit
    page): the sink the app was given, so a force's own audit system is what both show, and
    the read recorded in it."""
    sink = request_sink(request)

    def load() -> list[AuditRecord]:
        records, _ = read_records(sink)
        return select(
            records,
            child_ref=child_ref,
            episode_id=episode_id,
            subject=subject,
            since=since,
            until=until,
        )

    chosen = await asyncio.to_thread(load)
    await record_access(
        request,
        actor,
        "read_audit",
        episode_id=episode_id,
        child_ref=child_ref,
        detail={
            "subject": subject,
            "since": _iso(since),
            "until": _iso(until),
            "returned": min(len(chosen), MAX_RECORDS),
        },
    )
    return AuditAnswer(records=chosen[-MAX_RECORDS:], truncated=len(chosen) > MAX_RECORDS)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None
