"""The dashboard's pages. Reads go through the API's own read functions (same visibility
queries, same errors) as the signed-in person; each view is an audited read with its purpose."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from mispers.api import reads
from mispers.api.context import ApiContext
from mispers.api.problems import ProblemError, engine_unavailable
from mispers.domain.events import REF_PATTERN
from mispers.domain.state import Alert, EpisodeState, EpisodeSummary
from mispers.domain.types import EpisodeStatus, Flag, RiskLevel
from mispers.engine.client import count_episodes, episodes_query, get_episode_state
from mispers.logs import get_logger
from mispers.security.audit import JsonlAuditSink, audit_path
from mispers.web import views
from mispers.web.guard import auditor, reader
from mispers.web.identity import UiUser, api_request, audit_read

router = APIRouter()
log = get_logger("mispers.web")
Reader = Annotated[UiUser, Depends(reader)]
PAGE_SIZE = 50
# Alerts are not in the visibility index: the alerts page and the "alerts for my rank" filter
# read the state of each listed episode, so they look at the most recent ones only (newest
# first, as the index lists them) to keep a page quick.
ALERT_SCAN = 100
# How long those reads may take together; an episode not answered by then is left out.
STATE_READ_BUDGET = 5.0


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


async def states_of(request: Request, ids: list[str]) -> dict[str, EpisodeState]:
    """The states the engine answered for within STATE_READ_BUDGET; an episode it could not
    answer for (no worker polling its queue, a key not in our ring) is left out and the page
    says how many."""
    client = await _context(request).client()
    slots = asyncio.Semaphore(16)

    async def one(episode_id: str) -> EpisodeState | None:
        async with slots:
            try:
                return await get_episode_state(client, episode_id)
            except (RPCError, WorkflowQueryFailedError):
                return None
            except Exception as exc:  # one unreadable episode must not fail the page
                log.warning(
                    "episode state unreadable", episode_id=episode_id, error_type=type(exc).__name__
                )
                return None

    tasks = [asyncio.create_task(one(i)) for i in ids]
    if not tasks:
        return {}
    done, pending = await asyncio.wait(tasks, timeout=STATE_READ_BUDGET)
    for task in pending:
        task.cancel()
    found = [t.result() for t in done]
    return {s.episode_id: s for s in found if s is not None}


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
    alerts: dict[str, list[Alert]] = {}
    unread = 0
    if only_mine:
        states = await states_of(request, [e.episode_id for e in rows])
        unread = len(rows) - len(states)
        for episode_id, state in states.items():
            mine_open = [
                a
                for a in views.alerts_for_rank(state.alerts, user.rank)
                if views.alert_state(a) == "triggered"
            ]
            if mine_open:
                alerts[episode_id] = mine_open
        rows = [e for e in rows if e.episode_id in alerts]
        await audit_read(request, user, "list_alerts", episode_ids=list(states))
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
        unread=unread,
        query_without_page={k: v for k, v in filters.items() if v},
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
    user: Reader,
    rank: Annotated[str | None, Query(max_length=20)] = None,
    acknowledged: Annotated[str | None, Query(max_length=5)] = None,
) -> HTMLResponse:
    """Alerts raised to my rank (or any rank), newest first, from the open episodes' states."""
    from mispers.domain.types import Rank
    from mispers.web.decisions import form_token

    chosen = None if rank == "all" else (_choice(rank, Rank) or user.rank)
    page = await reads.list_episodes_endpoint(
        api_request(request, user),
        user.actor,
        status=None,
        risk=None,
        overdue=None,
        child_ref=None,
        flag=None,
        open=True,
        page_size=ALERT_SCAN,
        page_token=None,
    )
    states = await states_of(request, [e.episode_id for e in page.episodes])
    unread = len(page.episodes) - len(states)
    alerts = views.alerts_for_rank((a for s in states.values() for a in s.alerts), chosen)
    await audit_read(request, user, "list_alerts", episode_ids=list(states))
    return render(
        request,
        "alerts.html",
        user,
        alerts=alerts,
        alert_state=views.alert_state,
        rank=chosen.value if chosen else "all",
        unread=unread,
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
    """Who consulted a child's record or an episode, when and why (the audit file)."""
    sink = JsonlAuditSink(audit_path(_context(request).settings))
    child_ref = (child_ref or "").strip() or None
    episode_id = (episode_id or "").strip() or None
    if child_ref:
        records = sink.for_child(child_ref)
    elif episode_id:
        records = sink.for_episode(episode_id)
    else:
        records = list(sink.read())[-200:]
    records.reverse()
    return render(
        request,
        "audit.html",
        user,
        records=records[:200],
        child_ref=child_ref or "",
        episode_id=episode_id or "",
    )


__all__ = ["ProblemError", "episode_view", "render", "router"]
