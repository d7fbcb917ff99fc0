"""The dashboard's pages. Reads go through the API's own read functions (same visibility
queries, same errors) as the signed-in person; each view is an audited read with its purpose."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from temporalio.service import RPCError

from mispers.api import reads
from mispers.api.audit import audit_records
from mispers.api.context import ApiContext
from mispers.api.problems import ProblemError, engine_unavailable
from mispers.domain.events import REF_PATTERN
from mispers.domain.state import EpisodeState, EpisodeSummary
from mispers.domain.types import AlertState, EpisodeStatus, Flag, Rank, RiskLevel
from mispers.engine.alerts import AlertListItem, list_alerts
from mispers.engine.client import count_episodes, episodes_query
from mispers.security.audit import AuditRecord
from mispers.web import views
from mispers.web.guard import alert_handler, auditor, reader
from mispers.web.identity import UiUser, api_request, audit_read

router = APIRouter()
Reader = Annotated[UiUser, Depends(reader)]
PAGE_SIZE = 50
# The audit page shows the newest records matching its filters.
AUDIT_SHOWN = 200
# The alerts page shows the newest alerts matching its filters.
ALERTS_SHOWN = 200
OPEN_ALERT_STATES = (AlertState.TRIGGERED, AlertState.ACKNOWLEDGED)


def render(
    request: Request, name: str, user: UiUser | None, status: int = 200, **values: Any
) -> HTMLResponse:
    values.update(user=user, session=request.state.session, now=dt.datetime.now(dt.UTC))
    response: HTMLResponse = request.app.state.templates.TemplateResponse(
        request, name, values, status_code=status
    )
    return response


def _context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.mispers
    return context


async def open_counts(request: Request) -> dict[str, int]:
    """Open episodes by risk, and how many are overdue: one visibility count each."""
    client = await _context(request).client()
    queries = {level.value: episodes_query(risk=level, open_only=True) for level in RiskLevel}
    queries["overdue"] = episodes_query(overdue=True, open_only=True)
    queries["open"] = episodes_query(open_only=True)
    try:
        counts = await asyncio.gather(*(count_episodes(client, q) for q in queries.values()))
    except RPCError as exc:
        raise engine_unavailable(f"visibility count failed ({exc.status.name})") from None
    return dict(zip(queries, counts, strict=True))


async def open_alerts(request: Request, rank: Rank | None) -> list[AlertListItem]:
    """Triggered and acknowledged alerts (for `rank`, or every rank), newest first: the same
    read as GET /v1/alerts (the `AlertStates` index picks the episodes, each one's `alerts` memo
    comes with the listing), so no episode is replayed to show its alerts."""
    client = await _context(request).client()
    try:
        found = await asyncio.gather(
            *(list_alerts(client, state=s, rank=rank) for s in OPEN_ALERT_STATES)
        )
    except RPCError as exc:
        raise engine_unavailable(f"visibility query failed ({exc.status.name})") from None
    return sorted(
        (a for part in found for a in part),
        key=lambda a: (a.raised_at, a.escalation_level, a.alert_id),
        reverse=True,
    )


def _choice(value: str | None, kind: Any) -> Any:
    try:
        return kind(value) if value else None
    except ValueError:
        return None


@router.get("/episodes")
async def episodes_page(
    request: Request,
    user: Reader,
    risk: Annotated[str | None, Query(max_length=20)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    overdue: Annotated[str | None, Query(max_length=5)] = None,
    flag: Annotated[str | None, Query(max_length=40)] = None,
    mine: Annotated[str | None, Query(max_length=5)] = None,
    page_token: Annotated[str | None, Query(max_length=4096)] = None,
) -> HTMLResponse:
    level = _choice(risk, RiskLevel)
    chosen_status = _choice(status, EpisodeStatus)
    chosen_flag = _choice(flag, Flag)
    late = {"yes": True, "no": False}.get(overdue or "")
    only_mine = mine == "yes"
    if only_mine:
        late = True  # an alert is raised for a missed deadline: look at overdue episodes only
    counts = await open_counts(request)
    page = await reads.list_episodes_endpoint(
        api_request(request, user),
        user.actor,
        status=chosen_status,
        risk=level,
        overdue=late,
        child_ref=None,
        flag=chosen_flag,
        open=status != "all" and chosen_status is None,
        page_size=PAGE_SIZE,
        page_token=page_token,
    )
    rows: list[EpisodeSummary] = page.episodes
    alerts: dict[str, list[AlertListItem]] = {}
    if only_mine:
        for alert in await open_alerts(request, user.rank):
            if alert.state is AlertState.TRIGGERED:
                alerts.setdefault(alert.episode_id, []).append(alert)
        rows = [e for e in rows if e.episode_id in alerts]
        await audit_read(request, user, "list_alerts", episode_ids=sorted(alerts))
    filters = {
        "risk": level.value if level else "",
        "status": status if status == "all" else (chosen_status.value if chosen_status else ""),
        "overdue": overdue if overdue in ("yes", "no") else "",
        "flag": chosen_flag.value if chosen_flag else "",
        "mine": "yes" if only_mine else "",
    }
    return render(
        request,
        "episodes.html",
        user,
        counts=counts,
        episodes=views.by_urgency(rows),
        alerts=alerts,
        filters=filters,
        next_page_token=page.next_page_token,
        query_without_page={k: v for k, v in filters.items() if v},
        here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    )


@router.get("/episodes/{episode_id}")
async def episode_page(
    request: Request,
    user: Reader,
    episode_id: Annotated[str, Path(pattern=REF_PATTERN)],
    done: Annotated[str | None, Query(max_length=60)] = None,
) -> HTMLResponse:
    state = await reads.get_episode(api_request(request, user), user.actor, episode_id)
    return episode_view(request, user, state, done=done)


def episode_view(
    request: Request,
    user: UiUser,
    state: EpisodeState,
    *,
    done: str | None = None,
    errors: list[dict[str, str]] | None = None,
    failed_form: str | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    from mispers.web.decisions import DONE_MESSAGES, form_token

    outstanding = [o for o in state.outstanding() if o.kind.value != "closure_review"]
    return render(
        request,
        "episode.html",
        user,
        status=status,
        state=state,
        outstanding=outstanding,
        alerts=sorted(state.alerts, key=lambda a: a.raised_at, reverse=True),
        alert_state=views.alert_state,
        done=DONE_MESSAGES.get(done or ""),
        errors=errors,
        failed_form=failed_form,
        values=values or {},
        form_token=form_token(),
        may_send=user.may_send and state.status is not EpisodeStatus.CLOSED,
    )


@router.get("/children/{child_ref}")
async def child_page(
    request: Request, user: Reader, child_ref: Annotated[str, Path(pattern=REF_PATTERN)]
) -> HTMLResponse:
    record = await reads.get_child(api_request(request, user), user.actor, child_ref)
    return render(request, "child.html", user, record=record)


@router.get("/alerts")
async def alerts_page(
    request: Request,
    user: Annotated[UiUser, Depends(alert_handler)],
    rank: Annotated[str | None, Query(max_length=20)] = None,
    acknowledged: Annotated[str | None, Query(max_length=5)] = None,
) -> HTMLResponse:
    """Alerts raised to my rank (or any rank) not yet resolved, newest first."""
    from mispers.web.decisions import form_token

    chosen = None if rank == "all" else (_choice(rank, Rank) or user.rank)
    alerts = (await open_alerts(request, chosen))[:ALERTS_SHOWN]
    await audit_read(
        request, user, "list_alerts", episode_ids=sorted({a.episode_id for a in alerts})
    )
    return render(
        request,
        "alerts.html",
        user,
        alerts=alerts,
        rank=chosen.value if chosen else "all",
        form_token=form_token(),
        acknowledged=bool(acknowledged),
    )


@router.get("/audit")
async def audit_page(
    request: Request,
    user: Annotated[UiUser, Depends(auditor)],
    child_ref: Annotated[str | None, Query(max_length=64)] = None,
    episode_id: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    """Who consulted a child's record or an episode, when and why: read as GET /v1/audit reads
    it (the configured sink, the read itself recorded), newest first."""
    child_ref = (child_ref or "").strip() or None
    episode_id = (episode_id or "").strip() or None
    errors = [
        {"text": f"Enter a {label} made of letters, digits and - _ . :", "href": f"#{field}"}
        for value, label, field in (
            (child_ref, "child reference", "audit-child"),
            (episode_id, "episode reference", "audit-episode"),
        )
        if value is not None and not re.fullmatch(REF_PATTERN, value)
    ]
    records: list[AuditRecord] = []
    if not errors:
        answer = await audit_records(
            api_request(request, user), user.actor, child_ref=child_ref, episode_id=episode_id
        )
        records = answer.records[-AUDIT_SHOWN:]
        records.reverse()
    return render(
        request,
        "audit.html",
        user,
        status=400 if errors else 200,
        errors=errors or None,
        field_errors={e["href"][1:]: {"text": e["text"]} for e in errors},
        records=records,
        child_ref=child_ref or "",
        episode_id=episode_id or "",
    )


__all__ = ["ProblemError", "episode_view", "render", "router"]
