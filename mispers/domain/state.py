"""The episode state of the contract (docs/contract.md, "Reads"): the `state` query's answer,
the workflow's memory and what continue-as-new carries. Mutable pydantic models so the pure
rules can update them in place."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from mispers.domain.events import Actor, Child
from mispers.domain.types import (
    AlertState,
    EpisodeStatus,
    ObligationKind,
    ObligationStatus,
    Rank,
    RiskLevel,
)

_OUTSTANDING = frozenset({ObligationStatus.OPEN, ObligationStatus.OVERDUE})


class StateModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    def assign(self, **values: Any) -> None:
        """Set plain fields as pydantic's own assignment does when it does not validate (the
        value into the model's dictionary, the name into its set fields), without its dispatch
        per attribute: the ladder writes an obligation's figures at every alert of a year."""
        self.__dict__.update(values)
        self.__pydantic_fields_set__.update(values)


class RiskGrading(StateModel):
    level: RiskLevel
    at: dt.datetime
    by: str
    rank: Rank | None = None
    rationale: str
    event_id: str | None = None
    automatic: bool = False
    flagged: str | None = Field(
        None, description="Why a supervisor should look again (e.g. a history-based rationale)."
    )


class RiskState(StateModel):
    level: RiskLevel
    floor: RiskLevel
    floor_reasons: list[str] = Field(default_factory=list)
    confirmed: bool = Field(
        False, description="False until the systems checks are recorded: the grade is provisional."
    )
    history: list[RiskGrading] = Field(default_factory=list)


class RepeatCounts(StateModel):
    episodes_30d: int = 0
    episodes_90d: int = 0
    episodes_365d: int = 0
    by_days: dict[int, int] = Field(default_factory=dict)
    known: bool = Field(False, description="True once the child record has answered.")


class Obligation(StateModel):
    id: str
    kind: ObligationKind
    owner: Rank
    due_at: dt.datetime
    status: ObligationStatus = ObligationStatus.OPEN
    escalation_level: int = 0
    met_at: dt.datetime | None = None
    met_by_event: str | None = None
    anchor_at: dt.datetime = Field(description="When its clock started (deadlines recompute).")
    next_escalation_at: dt.datetime | None = None
    subject: str | None = Field(None, description="Authority, person or crime it concerns.")
    reason: str | None = Field(None, description="Why it exists (trigger) or a hint.")
    closed_reason: str | None = None
    waived_by: str | None = None

    @property
    def outstanding(self) -> bool:
        return self.status in _OUTSTANDING  # ObligationStatus.is_outstanding, asked at every tick


class Recipient(StateModel):
    person_id: str
    email: str


class AlertStep(StateModel):
    """One step of an alert's own timeline (the episode's timeline holds the events)."""

    transition: AlertState
    at: dt.datetime
    by: str | None = None
    reason: str | None = None


class Alert(StateModel):
    alert_id: str
    episode_id: str
    obligation_id: str
    kind: ObligationKind
    due_at: dt.datetime
    escalation_level: int
    rank: Rank
    raised_at: dt.datetime
    scheduled_at: dt.datetime
    acknowledged_by: str | None = Field(
        None, description="Who acknowledged it last (kept when an acknowledgement times out)."
    )
    acknowledged_at: dt.datetime | None = None
    state: AlertState = AlertState.TRIGGERED
    acknowledged_rank: Rank | None = None
    ack_pauses_escalation: bool = Field(
        False,
        description="False when the acknowledger's rank is below the alert's: recorded, but "
        "escalation goes on.",
    )
    ack_expires_at: dt.datetime | None = Field(
        None, description="When an acknowledgement that paused escalation lapses."
    )
    ack_timeouts: int = Field(0, description="Acknowledgements that lapsed with the work undone.")
    resolved_at: dt.datetime | None = None
    recipient: Recipient | None = Field(
        None, description="The person on duty for the rank who was paged (from the rota)."
    )
    unstaffed: bool = Field(False, description="The rota named nobody on duty for the rank.")
    ack_url: str | None = Field(None, description="The signed link sent to the recipient.")
    risk_level: RiskLevel | None = Field(None, description="The episode's grade when raised.")
    steps: list[AlertStep] = Field(default_factory=list, description="Its lifecycle, in order.")


class AlertTransition(StateModel):
    """One lifecycle step for the sinks: what happened and to which alert (a snapshot)."""

    transition: AlertState
    alert: Alert
    notify: str | None = Field(
        None, description="A person to page besides the rank's (the acknowledger, on timeout)."
    )
    reason: str | None = None


class Communication(StateModel):
    event_id: str
    at: dt.datetime
    direction: str
    authority: str
    contact_name: str
    method: str
    purpose: str
    summary: str
    officer_id: str


class TimelineEntry(StateModel):
    """An accepted event, or (`source` `mispers`) a step an alert took by itself."""

    event_id: str
    type: str
    time: dt.datetime
    source: str
    actor: str | None
    posted_by: Actor | None = None
    recorded_at: dt.datetime
    data: dict[str, Any]


class LocationHit(StateModel):
    postcode_key: str
    category: str
    reference: str
    event_id: str


class LinkedPerson(StateModel):
    person_ref: str
    relation: str
    identified_by_event: str | None = None
    resolved: str | None = None


class Closure(StateModel):
    requested_at: dt.datetime | None = None
    requested_by_event: str | None = None
    approved_at: dt.datetime | None = None
    approved_by: str | None = None
    rationale: str | None = None


class EpisodeState(StateModel):
    episode_id: str
    status: EpisodeStatus = EpisodeStatus.MISSING
    reported: bool = False
    child_ref: str | None = None
    looked_after: bool = False
    child: Child | None = None
    reported_at: dt.datetime | None = None
    last_seen_at: dt.datetime | None = None
    found_at: dt.datetime | None = None
    found_postcode_key: str | None = None
    closed_at: dt.datetime | None = None
    risk: RiskState | None = None
    flags: list[str] = Field(default_factory=list)
    repeat: RepeatCounts = Field(default_factory=RepeatCounts)
    obligations: list[Obligation] = Field(default_factory=list)
    communications: list[Communication] = Field(default_factory=list)
    alerts: list[Alert] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    linked_persons: list[LinkedPerson] = Field(default_factory=list)
    location_hits: list[LocationHit] = Field(default_factory=list)
    closure: Closure = Field(default_factory=Closure)
    policy_version: str = ""
    missing_trigger_done: bool = False
    event_keys: list[str] = Field(
        default_factory=list, description="source+id of every accepted event (idempotency)."
    )
    # Set by the workflow for each run (behind `workflow.patched`), never carried or shown.
    alert_lifecycle: bool = Field(False, exclude=True)
    alert_timeline: bool = Field(False, exclude=True)
    alert_outbox: list[AlertTransition] = Field(default_factory=list, exclude=True)
    # The rules' own bookkeeping, never carried: a fresh state (a replay, continue-as-new)
    # starts without it and the rules simply do the full pass once.
    _settled_mark: tuple[int, int] | None = PrivateAttr(default=None)
    _acks_from: int = PrivateAttr(default=0)
    _outbox_kept: bool = PrivateAttr(default=True)
    _steps_kept: bool = PrivateAttr(default=True)

    def _private(self) -> dict[str, Any]:
        # pydantic keeps private attributes here; reading them as attributes goes through its
        # slow `__getattr__`, and the rules ask at every timer
        private = self.__pydantic_private__
        assert private is not None
        return private

    def alerts_settled_mark(self) -> tuple[int, int] | None:
        return self._private()["_settled_mark"]  # type: ignore[no-any-return]

    def mark_alerts_settled(self, mark: tuple[int, int]) -> None:
        self._private()["_settled_mark"] = mark

    def keeps_alert_outbox(self) -> bool:
        return self._private()["_outbox_kept"]  # type: ignore[no-any-return]

    def discard_alert_outbox(self) -> None:
        """For a run with no sinks (the offline driver): the lifecycle's steps are still kept
        on each alert, but no snapshot is made for sinks that do not exist."""
        self._private()["_outbox_kept"] = False

    def keeps_alert_steps(self) -> bool:
        return self._private()["_steps_kept"]  # type: ignore[no-any-return]

    def discard_alert_steps(self) -> None:
        """For a run whose alerts are read only for what was raised, when and to whom (a policy
        simulation): no step is kept on each alert. The rules never read the steps; they are
        the record a supervisor reads, and a simulation has none."""
        self._private()["_steps_kept"] = False

    def acks_pending_from(self) -> int:
        """No alert before this index holds an acknowledgement that can lapse."""
        return self._private()["_acks_from"]  # type: ignore[no-any-return]

    def mark_acks_pending_from(self, index: int) -> None:
        self._private()["_acks_from"] = index

    # Derived views -------------------------------------------------------------------------

    def obligation(self, obligation_id: str) -> Obligation | None:
        return next((o for o in self.obligations if o.id == obligation_id), None)

    def outstanding(self) -> list[Obligation]:
        return [o for o in self.obligations if o.outstanding]

    @property
    def overdue_count(self) -> int:
        return sum(1 for o in self.obligations if o.status is ObligationStatus.OVERDUE)

    @property
    def next_deadline(self) -> dt.datetime | None:
        dues = [o.due_at for o in self.obligations if o.status is ObligationStatus.OPEN]
        return min(dues) if dues else None

    def has_flag(self, flag: str) -> bool:
        return flag in self.flags

    def add_flag(self, flag: str) -> bool:
        if flag in self.flags:
            return False
        self.flags = sorted([*self.flags, flag])
        return True

    def summary(self) -> EpisodeSummary:
        return EpisodeSummary(
            episode_id=self.episode_id,
            status=self.status,
            risk_level=self.risk.level if self.risk else None,
            child_ref=self.child_ref,
            overdue_count=self.overdue_count,
            next_deadline=self.next_deadline,
            flags=list(self.flags),
        )


class EpisodeSummary(StateModel):
    episode_id: str
    status: EpisodeStatus
    risk_level: RiskLevel | None
    child_ref: str | None
    overdue_count: int
    next_deadline: dt.datetime | None
    # Read from the visibility index for the dashboard's list; kept out of the API's JSON so the
    # list's documented shape does not change.
    flags: list[str] = Field(default_factory=list, exclude=True)
