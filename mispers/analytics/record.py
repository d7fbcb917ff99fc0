"""The analytics record of one episode: what an inspection asks about, without personal data.

No name, date of birth, address, postcode, free-text rationale or officer narrative leaves the
episode: the child is its reference, places are flags, risk is levels and ranks. Waiver reasons
are kept because inspectors ask why steps were skipped; the report groups them and suppresses
any reason given fewer than five times. Built by a pure function so the workflow can build it
deterministically at close (only the record, never the state, reaches the activity)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

from mispers.domain.alert_lifecycle import SYSTEM_SOURCE
from mispers.domain.state import EpisodeState
from mispers.domain.types import ObligationStatus
from mispers.simulation.stream import pii_free_stream

REASON_MAX = 120


class ObligationRecord(BaseModel):
    obligation_id: str
    kind: str
    owner: str
    anchor_at: dt.datetime
    due_at: dt.datetime
    status: str
    met_at: dt.datetime | None = None
    escalation_level: int = 0
    waived_reason: str | None = None


class AlertRecord(BaseModel):
    alert_id: str
    obligation_id: str
    kind: str
    rank: str
    escalation_level: int
    due_at: dt.datetime
    scheduled_at: dt.datetime
    raised_at: dt.datetime
    acknowledged_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None


class GradeRecord(BaseModel):
    level: str
    at: dt.datetime
    rank: str | None = None
    automatic: bool = False
    flagged: bool = False


class EpisodeRecord(BaseModel):
    """`record_key` (episode and run, or a snapshot's instant) makes a write idempotent: the
    same key written again replaces itself, byte for byte."""

    record_key: str
    episode_id: str
    written_at: dt.datetime
    closed: bool
    status: str
    child_ref: str | None
    looked_after: bool
    risk_at_report: str | None
    risk_at_close: str | None
    risk_floor: str | None
    flags: list[str] = Field(default_factory=list)
    reported_at: dt.datetime | None
    found_at: dt.datetime | None
    closed_at: dt.datetime | None
    repeat_30d: int = 0
    repeat_90d: int = 0
    repeat_365d: int = 0
    location_hits: int = 0
    location_categories: list[str] = Field(default_factory=list)
    policy_version: str = ""
    event_times: dict[str, list[dt.datetime]] = Field(default_factory=dict)
    grades: list[GradeRecord] = Field(default_factory=list)
    obligations: list[ObligationRecord] = Field(default_factory=list)
    alerts: list[AlertRecord] = Field(default_factory=list)
    # the accepted events without personal data, for policy simulation (mispers.simulation)
    stream: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def month(self) -> str:
        at = self.reported_at or self.written_at
        return f"{at.year:04d}-{at.month:02d}"


_RESOLVED = (ObligationStatus.MET, ObligationStatus.WAIVED, ObligationStatus.LAPSED)


def episode_record(state: EpisodeState, run: str, written_at: dt.datetime) -> EpisodeRecord:
    """The record of `state` as of `written_at`; `run` names the workflow run (close-time export)
    or the snapshot."""
    risk = state.risk
    history = risk.history if risk else []
    times: dict[str, list[dt.datetime]] = {}
    for entry in state.timeline:
        if entry.source == SYSTEM_SOURCE:
            continue  # an alert's own step: the alerts are recorded in full beside the events
        times.setdefault(entry.type.removeprefix("mispers."), []).append(entry.time)
    resolved = {
        o.id: o.met_at for o in state.obligations if o.status in _RESOLVED and o.met_at is not None
    }
    # The record is assembled without validating it again (`model_construct`): every value below
    # already has its field's type (the state is validated). Its many small parts are validated:
    # pydantic-core's validation of a few fields is faster than `model_construct`'s Python loop
    # (2.2 against 3.3 us an alert record), and a synthetic year builds millions of them.
    return EpisodeRecord.model_construct(
        record_key=f"{state.episode_id}/{run}",
        episode_id=state.episode_id,
        written_at=written_at,
        closed=state.status.value == "closed",
        status=state.status.value,
        child_ref=state.child_ref,
        looked_after=state.looked_after,
        risk_at_report=history[0].level.value if history else None,
        risk_at_close=risk.level.value if risk else None,
        risk_floor=risk.floor.value if risk else None,
        flags=list(state.flags),
        reported_at=state.reported_at,
        found_at=state.found_at,
        closed_at=state.closed_at,
        repeat_30d=state.repeat.episodes_30d,
        repeat_90d=state.repeat.episodes_90d,
        repeat_365d=state.repeat.episodes_365d,
        location_hits=len(state.location_hits),
        location_categories=sorted({h.category for h in state.location_hits}),
        policy_version=state.policy_version,
        event_times=times,
        grades=[
            GradeRecord(
                level=g.level.value,
                at=g.at,
                rank=g.rank.value if g.rank else None,
                automatic=g.automatic,
                flagged=g.flagged is not None,
            )
            for g in history
        ],
        obligations=[
            ObligationRecord(
                obligation_id=o.id,
                kind=o.kind.value,
                owner=o.owner.value,
                anchor_at=o.anchor_at,
                due_at=o.due_at,
                status=o.status.value,
                met_at=o.met_at,
                escalation_level=o.escalation_level,
                waived_reason=(o.closed_reason or "")[:REASON_MAX] or None
                if o.status is ObligationStatus.WAIVED
                else None,
            )
            for o in state.obligations
        ],
        alerts=[
            AlertRecord(
                alert_id=a.alert_id,
                obligation_id=a.obligation_id,
                kind=a.kind.value,
                rank=a.rank.value,
                escalation_level=a.escalation_level,
                due_at=a.due_at,
                scheduled_at=a.scheduled_at,
                raised_at=a.raised_at,
                acknowledged_at=a.acknowledged_at,
                resolved_at=a.resolved_at or resolved.get(a.obligation_id),
            )
            for a in state.alerts
        ],
        stream=pii_free_stream(state),
    )
