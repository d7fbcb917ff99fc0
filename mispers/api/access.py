"""The API's side of the access audit: each request's record (who from the token, where from the
connection, why from `X-Mispers-Purpose`), refusals of access recorded, an unwritable audit
answered 503 and counted.

A refused access (401 without a valid token, 403 for a role or rank that may not) is recorded
like a read, with whatever is known of the caller: the token's actor once verified, else none.
Only references taken from the route (episode id, child ref, when shaped as one) go in the
record, and the route's template rather than the path, so text typed into a URL never does.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mispers.api.metrics import count_audit_failure
from mispers.api.problems import ProblemError, problem, problem_response
from mispers.config import Settings
from mispers.domain.events import REF_PATTERN
from mispers.logs import get_logger
from mispers.security.audit import (
    PURPOSE_HEADER,
    PURPOSE_MAX,
    AuditAction,
    AuditRecord,
    AuditSink,
    AuditUnavailable,
    DetailValue,
    audit_sink,
)

log = get_logger("mispers.audit")

_REF = re.compile(REF_PATTERN)
REFUSED_ACCESS = frozenset({401, 403})


def install_audit(app: Any, settings: Settings) -> AuditSink:
    """Give the API app its sink (`app.state.audit`), once, in the app factory; endpoints then
    call `record_access`."""
    sink = audit_sink(settings)
    app.state.audit = sink
    return sink


def app_audit_sink(app: Any, settings: Settings) -> AuditSink:
    sink = getattr(app.state, "audit", None)
    if isinstance(sink, AuditSink):
        return sink
    return install_audit(app, settings)


def request_sink(request: Any) -> AuditSink:
    sink = getattr(request.app.state, "audit", None)
    if isinstance(sink, AuditSink):
        return sink
    settings = getattr(getattr(request.app.state, "mispers", None), "settings", None)
    if not isinstance(settings, Settings):
        raise RuntimeError("no audit sink: call install_audit(app, settings) in the app factory")
    return install_audit(request.app, settings)


def request_purpose(request: Any) -> str | None:
    """The `X-Mispers-Purpose` header as given, or None; ValueError if over 200 characters."""
    purpose: str | None = request.headers.get(PURPOSE_HEADER)
    if purpose is not None and len(purpose) > PURPOSE_MAX:
        raise ValueError(f"{PURPOSE_HEADER} is at most {PURPOSE_MAX} characters")
    return purpose


async def record_access(
    request: Any,
    actor: Any,
    action: AuditAction,
    *,
    episode_id: str | None = None,
    child_ref: str | None = None,
    episode_ids: Iterable[str] = (),
    child_refs: Iterable[str] = (),
    detail: Mapping[str, DetailValue] | None = None,
    sink: AuditSink | None = None,
) -> str:
    """Record one access from an API endpoint: `actor` is the token's Actor (or None when no
    valid token was shown), `request` the Starlette request (its app holds the sink; its client,
    headers and purpose say from where and why). Await it before answering, so nothing is read
    without a trace: AuditUnavailable (answered 503) if the sink cannot take the record."""
    sink = sink if sink is not None else request_sink(request)
    try:
        purpose = request_purpose(request)
    except ValueError:
        purpose = request.headers.get(PURPOSE_HEADER, "")[:PURPOSE_MAX]
    if actor is None:
        subject, role, rank = "(no valid token)", "none", None
    else:
        subject = str(actor.subject)
        role = str(getattr(actor.role, "value", actor.role))
        held = getattr(actor, "rank", None)
        rank = str(getattr(held, "value", held)) if held is not None else None
    entry = AuditRecord.now(
        subject=subject,
        role=role,
        rank=rank,
        action=action,
        episode_id=episode_id,
        child_ref=child_ref,
        episode_ids=episode_ids,
        child_refs=child_refs,
        client=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        purpose=purpose,
        detail=detail,
    )
    try:
        return await sink.record(entry)
    except Exception as exc:
        count_audit_failure(action)
        log.error("audit write failed", action=action, error_type=type(exc).__name__)
        raise AuditUnavailable(
            f"the access audit cannot be written ({type(exc).__name__})"
        ) from None


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
