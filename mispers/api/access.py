"""The API's side of the access audit: refusals of access recorded, an unwritable audit answered.

A refused access (401 without a valid token, 403 for a role or rank that may not) is recorded
like a read, with whatever is known of the caller: the token's actor once verified, else none.
Only references taken from the route (episode id, child ref, when shaped as one) go in the
record, and the route's template rather than the path, so text typed into a URL never does.
"""

from __future__ import annotations

import contextlib
import re

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mispers.api.problems import ProblemError, problem, problem_response
from mispers.domain.events import REF_PATTERN
from mispers.security.audit import AuditUnavailable, record_access

_REF = re.compile(REF_PATTERN)
REFUSED_ACCESS = frozenset({401, 403})


def audit_unavailable(detail: str) -> ProblemError:
    err = problem(503, "audit-unavailable", "The access audit cannot be written", detail)
    err.headers = {"Retry-After": "1"}
    return err


async def audit_refusal(request: Request, err: ProblemError) -> None:
    """Record a 401/403 once (a refusal already recorded is marked `audited`). A refusal is
    answered even when the audit cannot take it: it served nothing (the failure is logged and
    counted by `record_access`)."""
    if err.problem.status not in REFUSED_ACCESS or err.audited:
        return
    err.audited = True
    params = {**request.query_params, **request.path_params}
    episode_id = _ref(params.get("episode_id")) or err.problem.episode_id
    route = request.scope.get("route")
    detail: dict[str, str | int | None] = {
        "status": err.problem.status,
        "reason": err.reason,
        "method": request.method,
        "route": getattr(route, "path", None) or "unmatched",
    }
    if err.problem.event_id is not None:
        detail["event_id"] = err.problem.event_id
    with contextlib.suppress(AuditUnavailable):
        await record_access(
            request,
            getattr(request.state, "actor", None),
            "access_refused",
            episode_id=episode_id,
            child_ref=_ref(params.get("child_ref")),
            detail=detail,
        )


def install_access_audit(app: FastAPI) -> None:
    """Replace the plain problem handler with one that audits refusals of access, and answer
    an unwritable audit with 503."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        await audit_refusal(request, exc)
        return problem_response(exc)

    async def on_audit_unavailable(_: Request, exc: Exception) -> JSONResponse:
        return problem_response(audit_unavailable(str(exc)))

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(AuditUnavailable, on_audit_unavailable)


def _ref(value: object) -> str | None:
    return value if isinstance(value, str) and _REF.fullmatch(value) else None
