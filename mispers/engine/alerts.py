"""Alert reads for the API and the CLI, without replaying a workflow per alert.

Each episode keeps its alerts' states (and `state:rank` of the unresolved ones) in the
`AlertStates` search attribute and the alerts themselves (ids, ranks, times, the officer paged;
no child data) in its memo. A listing is one visibility query: the index picks the episodes, the
memo of each listed execution comes back with the listing, and the filters are finished here.
"""

from __future__ import annotations

import datetime as dt
import re

from pydantic import BaseModel, ValidationError
from temporalio.client import Client

from mispers.domain.events import REF_PATTERN
from mispers.domain.messages import EPISODE_WORKFLOW, episode_workflow_id
from mispers.domain.state import Recipient
from mispers.domain.types import AlertState, ObligationKind, Rank
from mispers.engine import search_attributes as sa
from mispers.logs import get_logger

log = get_logger("mispers.alerts.list")

MEMO_KEY = "alerts"  # workflows/episode.py ALERTS_MEMO
# A listing reads at most this many episodes (the alerts of each come with it).
MAX_EPISODES = 5000


class AlertListItem(BaseModel):
    episode_id: str
    alert_id: str
    obligation_id: str
    kind: ObligationKind
    due_at: dt.datetime
    escalation_level: int
    rank: Rank
    raised_at: dt.datetime
    state: AlertState
    acknowledged_by: str | None = None
    acknowledged_at: dt.datetime | None = None
    ack_expires_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None
    recipient: Recipient | None = None
    unstaffed: bool = False


def alerts_query(
    state: AlertState | None = None, rank: Rank | None = None, episode_id: str | None = None
) -> str:
    """Closed vocabularies and a checked id only, so no value can extend the query."""
    # A run that continued as new keeps its memo: its alerts are the next run's too.
    clauses = [f"WorkflowType = '{EPISODE_WORKFLOW}'", "ExecutionStatus != 'ContinuedAsNew'"]
    if episode_id is not None:
        if not re.fullmatch(REF_PATTERN, episode_id):
            raise ValueError("episode_id must match " + REF_PATTERN)
        clauses.append(f"WorkflowId = '{episode_workflow_id(episode_id)}'")
    if state is not None and rank is not None and state is not AlertState.RESOLVED:
        tokens = [f"{AlertState(state).value}:{Rank(rank).value}"]
    elif state is not None:
        tokens = [AlertState(state).value]
    elif rank is not None:
        open_states = (AlertState.TRIGGERED, AlertState.ACKNOWLEDGED)
        tokens = [f"{s.value}:{Rank(rank).value}" for s in open_states]
        tokens.append(AlertState.RESOLVED.value)
    else:
        tokens = [s.value for s in AlertState]
    listed = ", ".join(f"'{t}'" for t in tokens)
    clauses.append(f"{sa.ALERT_STATES.name} IN ({listed})")
    return " AND ".join(clauses)


async def list_alerts(
    client: Client,
    *,
    state: AlertState | None = None,
    rank: Rank | None = None,
    episode_id: str | None = None,
    recipient: str | None = None,
    running_only: bool = False,
) -> list[AlertListItem]:
    """Every matching alert, newest first."""
    found: list[AlertListItem] = []
    seen = 0
    query = alerts_query(state, rank, episode_id)
    if running_only:
        query += " AND ExecutionStatus = 'Running'"
    async for execution in client.list_workflows(query, page_size=500):
        seen += 1
        if seen > MAX_EPISODES:
            break
        try:
            entries = await execution.memo_value(MEMO_KEY, default=[])
        except Exception as exc:  # a memo sealed with a key this process lacks, say
            log.warning(
                "alerts memo unreadable; episode left out of the listing",
                workflow_id=execution.id,
                error_type=type(exc).__name__,
            )
            continue
        episode = execution.id.removeprefix(episode_workflow_id(""))
        for entry in entries if isinstance(entries, list) else []:
            try:
                item = AlertListItem.model_validate({**entry, "episode_id": episode})
            except ValidationError:
                continue
            if state is not None and item.state is not state:
                continue
            if rank is not None and item.rank is not rank:
                continue
            if recipient is not None and (
                item.recipient is None
                or recipient not in (item.recipient.person_id, item.recipient.email)
            ):
                continue
            found.append(item)
    found.sort(key=lambda a: (a.raised_at, a.escalation_level, a.alert_id), reverse=True)
    return found


def episode_candidates(alert_id: str) -> list[str]:
    """Episode ids an alert id can belong to (`{episode}:{obligation}:L{n}`; both parts may
    hold colons, an obligation starts with its kind)."""
    parts = alert_id.split(":")
    if len(parts) < 3 or not re.fullmatch(r"L\d+", parts[-1]):
        return []
    kinds = {k.value for k in ObligationKind}
    return [
        ":".join(parts[:i])
        for i in range(1, len(parts) - 1)
        if parts[i] in kinds and re.fullmatch(REF_PATTERN, ":".join(parts[:i]))
    ]
