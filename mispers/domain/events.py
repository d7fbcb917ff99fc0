"""The event contract (docs/contract.md, "Events") as pydantic models: one model per CloudEvents
`type`.

The API validates incoming CloudEvents into these models and the workflow receives them as they
are, so a field is defined once. Fields holding personal data are marked with `personal()`; log
redaction and error answers read that marking, so a new personal field needs no logging change.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from mispers.domain.types import Rank, RiskLevel, Role

REF_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
Ref = Annotated[str, StringConstraints(pattern=REF_PATTERN)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]

PERSONAL_MARK = "x-personal"


def personal(default: Any = ..., **kwargs: Any) -> Any:
    """A field holding personal data: never logged, never echoed in an error answer."""
    return Field(default, json_schema_extra={PERSONAL_MARK: True}, **kwargs)


class Strict(BaseModel):
    """Unknown fields are refused everywhere in the contract."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Location(Strict):
    description: str | None = personal(None, max_length=500)
    postcode: str | None = personal(None, max_length=16)


class Child(Strict):
    child_ref: Ref
    date_of_birth: dt.date = personal()
    name: str | None = personal(None, max_length=200)
    looked_after: bool
    responsible_authority: ShortText | None = None
    host_authority: ShortText | None = None
    on_protection_plan: bool = False


class ReportedBy(Strict):
    role: Literal["parent", "carer", "childrens_home", "school", "other"]


class EpisodeReportedData(Strict):
    child: Child
    last_seen_at: AwareDatetime
    last_seen_location: Location | None = None
    initial_risk: RiskLevel
    risk_factors: list[ShortText] = Field(default_factory=list, max_length=50)
    reported_by: ReportedBy
    officer_id: ShortText
    circumstances: str | None = personal(None, max_length=4000)


class RiskAssessedData(Strict):
    level: RiskLevel
    rationale: Text = personal()
    assessed_by: ShortText
    rank: Rank
    factors: list[ShortText] = Field(default_factory=list, max_length=50)


class SocialServicesContactedData(Strict):
    direction: Literal["outbound", "inbound"]
    authority: ShortText
    contact_name: ShortText = personal()
    method: Literal["phone", "email", "secure_email", "in_person", "meeting"]
    purpose: Literal[
        "missing_notification",
        "return_notification",
        "information_request",
        "strategy_meeting",
        "update",
        "other",
    ]
    summary: Text = personal()
    officer_id: ShortText


class EnquiryRecordedData(Strict):
    kind: Literal[
        "systems_checked",
        "home_search",
        "address_check",
        "associates",
        "hospitals",
        "phone",
        "social_media",
        "cctv",
        "pnc_circulated",
        "other",
    ]
    outcome: Text = personal()
    officer_id: ShortText


LinkedRelation = Literal["suspect", "associate", "harbourer", "adult_of_concern"]


class LinkedPersonIdentifiedData(Strict):
    person_ref: Ref
    relation: LinkedRelation
    officer_id: ShortText
    location: Location | None = None


class LinkedPersonResolvedData(Strict):
    person_ref: Ref
    outcome: Literal["traced_actioned", "traced_no_action", "eliminated"]
    rationale: Text = personal()
    officer_id: ShortText


class SightingReportedData(Strict):
    seen_at: AwareDatetime
    location: Location
    with_persons: list[Ref] = Field(default_factory=list, max_length=50)


class ChildFoundData(Strict):
    found_at: AwareDatetime
    location: Location
    found_by: ShortText
    seen_in_person: bool
    with_persons: list[Ref] = Field(default_factory=list, max_length=50)


DisclosureKind = Literal[
    "sexual_activity", "sexual_offence", "exploitation", "physical_harm", "other"
]


class Disclosure(Strict):
    kind: DisclosureKind
    summary: str | None = personal(None, max_length=4000)
    exploitation_type: Literal["cse", "cce"] | None = None


class SafeAndWellCompletedData(Strict):
    officer_id: ShortText
    in_person: bool
    disclosures: list[Disclosure] = Field(default_factory=list, max_length=50)
    outcome: Text = personal()


class ReturnInterviewCompletedData(Strict):
    provider: ShortText
    outcome: Literal["held", "declined", "not_held"]
    rationale: str | None = personal(None, max_length=4000)

    @model_validator(mode="after")
    def _rationale_unless_held(self) -> ReturnInterviewCompletedData:
        if self.outcome != "held" and not (self.rationale and self.rationale.strip()):
            raise ValueError("rationale is required unless the outcome is 'held'")
        return self


class CrimeRecordedData(Strict):
    crime_ref: Ref
    classification: ShortText
    officer_id: ShortText


class StrategyMeetingHeldData(Strict):
    chair: ShortText
    agencies: list[ShortText] = Field(min_length=1, max_length=50)
    outcome: Text = personal()


class ClosureRequestedData(Strict):
    officer_id: ShortText
    rationale: Text = personal()


class Waiver(Strict):
    obligation_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    reason: Text


class ClosureApprovedData(Strict):
    supervisor_id: ShortText
    rank: Rank
    rationale: Text = personal()
    waivers: list[Waiver] = Field(default_factory=list, max_length=100)


class AlertAcknowledgedData(Strict):
    alert_id: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    by: ShortText
    note: str | None = personal(None, max_length=1000)


class Actor(Strict):
    """Who posted the event: the bearer token's subject, role and rank (recorded in the
    timeline). The rank is the token's; `None` on a role that carries none (`system`,
    `auditor`) and on events recorded before tokens carried ranks."""

    subject: ShortText
    role: Role
    rank: Rank | None = None


class EventBase(Strict):
    """A CloudEvent once validated; `subject` is the episode id, `id` the idempotency key."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    source: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    subject: Ref
    time: AwareDatetime
    actor: Actor | None = None


class EpisodeReported(EventBase):
    type: Literal["mispers.episode.reported"]
    data: EpisodeReportedData


class RiskAssessed(EventBase):
    type: Literal["mispers.risk.assessed"]
    data: RiskAssessedData


class SocialServicesContacted(EventBase):
    type: Literal["mispers.social_services.contacted"]
    data: SocialServicesContactedData


class EnquiryRecorded(EventBase):
    type: Literal["mispers.enquiry.recorded"]
    data: EnquiryRecordedData


class LinkedPersonIdentified(EventBase):
    type: Literal["mispers.linked_person.identified"]
    data: LinkedPersonIdentifiedData


class LinkedPersonResolved(EventBase):
    type: Literal["mispers.linked_person.resolved"]
    data: LinkedPersonResolvedData


class SightingReported(EventBase):
    type: Literal["mispers.sighting.reported"]
    data: SightingReportedData


class ChildFound(EventBase):
    type: Literal["mispers.child.found"]
    data: ChildFoundData


class SafeAndWellCompleted(EventBase):
    type: Literal["mispers.safe_and_well.completed"]
    data: SafeAndWellCompletedData


class ReturnInterviewCompleted(EventBase):
    type: Literal["mispers.return_interview.completed"]
    data: ReturnInterviewCompletedData


class CrimeRecorded(EventBase):
    type: Literal["mispers.crime.recorded"]
    data: CrimeRecordedData


class StrategyMeetingHeld(EventBase):
    type: Literal["mispers.strategy_meeting.held"]
    data: StrategyMeetingHeldData


class ClosureRequested(EventBase):
    type: Literal["mispers.closure.requested"]
    data: ClosureRequestedData


class ClosureApproved(EventBase):
    type: Literal["mispers.closure.approved"]
    data: ClosureApprovedData


class AlertAcknowledged(EventBase):
    type: Literal["mispers.alert.acknowledged"]
    data: AlertAcknowledgedData


AnyEvent = Annotated[
    EpisodeReported
    | RiskAssessed
    | SocialServicesContacted
    | EnquiryRecorded
    | LinkedPersonIdentified
    | LinkedPersonResolved
    | SightingReported
    | ChildFound
    | SafeAndWellCompleted
    | ReturnInterviewCompleted
    | CrimeRecorded
    | StrategyMeetingHeld
    | ClosureRequested
    | ClosureApproved
    | AlertAcknowledged,
    Field(discriminator="type"),
]

EVENT_MODELS: dict[str, type[EventBase]] = {
    model.model_fields["type"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in (
        EpisodeReported,
        RiskAssessed,
        SocialServicesContacted,
        EnquiryRecorded,
        LinkedPersonIdentified,
        LinkedPersonResolved,
        SightingReported,
        ChildFound,
        SafeAndWellCompleted,
        ReturnInterviewCompleted,
        CrimeRecorded,
        StrategyMeetingHeld,
        ClosureRequested,
        ClosureApproved,
        AlertAcknowledged,
    )
}

# Event types only a supervisor may send (docs/contract.md, "Roles": `system` sends any other);
# judged by `mispers.domain.authority` inside the episode.
SUPERVISOR_ONLY_TYPES = frozenset({"mispers.closure.approved"})


def event_actor_id(event: EventBase) -> str | None:
    """The person the event names as acting, for the timeline's `actor` column."""
    data = getattr(event, "data", None)
    # Asked of every event recorded: the fields are looked up in the model's own values, as
    # asking a pydantic model for a field it lacks raises and catches an error each time.
    values = data.__dict__ if isinstance(data, BaseModel) else {}
    for field in _ACTOR_FIELDS:
        value = values.get(field)
        if isinstance(value, str):
            return value
    return event.actor.subject if event.actor else None


_ACTOR_FIELDS = ("officer_id", "assessed_by", "supervisor_id", "by", "found_by", "chair")


def personal_field_names() -> frozenset[str]:
    """Every field name marked personal anywhere in the contract (for log redaction)."""
    names: set[str] = set()
    seen: set[type[BaseModel]] = set()

    def walk(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, info in model.model_fields.items():
            extra = info.json_schema_extra
            if isinstance(extra, dict) and extra.get(PERSONAL_MARK):
                names.add(name)
            for arg in _model_args(info.annotation):
                walk(arg)

    for model in EVENT_MODELS.values():
        walk(model)
    return frozenset(names)


def _model_args(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in getattr(annotation, "__args__", ()) or ():
        found.extend(_model_args(arg))
    return found
