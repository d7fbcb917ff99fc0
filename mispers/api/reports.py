"""`GET /v1/reports/compliance`: the inspection figures as JSON, for supervisors and auditors.

Read from the analytics store (not from Temporal: a year of episodes is one query there); the
counts are exact, as the JSON is for the force's own tools (the HTML and PDF suppress)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from mispers.api.auth import Action
from mispers.api.context import get_context, require
from mispers.api.problems import FieldProblem, invalid_parameter
from mispers.domain.events import Actor

router = APIRouter()
Reporter = Annotated[Actor, Depends(require(Action.REPORT))]


@router.get(
    "/v1/reports/compliance",
    summary="Obligations met on time, late, waived or overdue (and the other inspection figures)",
    responses={
        401: {"description": "No valid bearer token"},
        403: {"description": "Only supervisors and auditors read reports"},
        422: {
            "description": "A date that is not YYYY-MM-DD or out of range, or `to` before `from`"
        },
    },
)
async def compliance(
    request: Request,
    _: Reporter,
    from_: Annotated[dt.date, Query(alias="from", description="First day, YYYY-MM-DD")],
    to: Annotated[dt.date, Query(description="Last day, YYYY-MM-DD (included)")],
) -> dict[str, Any]:
    from mispers.analytics.figures import period_problem

    problem = period_problem(from_, to)
    if problem is not None:
        field, reason = problem
        raise invalid_parameter([FieldProblem(field=field, rule="report_period", message=reason)])
    settings = get_context(request).settings
    return await asyncio.to_thread(_figures, settings.data_dir, settings.analytics, from_, to)


def _figures(data_dir: Any, analytics: str | None, start: dt.date, end: dt.date) -> dict[str, Any]:
    from mispers.analytics.figures import compute, public_json
    from mispers.analytics.store import open_store

    con = open_store(data_dir, analytics).reader()
    try:
        return public_json(compute(con, start, end))
    finally:
        con.close()
