"""Inputs and results of the workflows' handlers: one pydantic model per handler (SDK idiom)."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Literal

from pydantic import BaseModel, Field

from mispers.domain.events import AnyEvent, EventBase
from mispers.domain.state import Alert, EpisodeState, Recipient
from mispers.domain.types import AlertState
from mispers.policy.model import PinnedPolicy

EPISODE_WORKFLOW = "MissingChildEpisode"
CHILD_RECORD_WORKFLOW = "ChildRecord"
TASK_QUEUE = "mispers"


def episode_workflow_id(episode_id: str) -> str:
    return f"episode-{episode_id}"


def child_workflow_id(child_ref: str) -> str:
    return f"child-{child_ref}"


def event_key(event: EventBase) -> str:
    """The idempotency key: CloudEvents ids are unique per source."""
    return f"{event.source}\n{event.id}"


def update_id_for(event: EventBase) -> str:
    """Temporal Update id of an event: stable across API retries and restarts."""
    return "ev-" + hashlib.sha256(event_key(event).encode()).hexdigest()[:40]


class AlertBatch(BaseModel):
    """Alerts for the sinks. `transition` None is a batch of an episode started before the
    alert lifecycle: raised alerts, sent as triggered."""

    batch_id: str
    alerts: list[Alert]
    transition: AlertState | None = None
    notify: str | None = Field(
        None, description="A person to page as well (the acknowledger, when their time ran out)."
    )
    reason: str | None = None


class EpisodeInput(BaseModel):
    episode_id: str
    policy: PinnedPolicy
    carried_state: EpisodeState | None = None
    pending_alerts: list[AlertBatch] = Field(default_factory=list)
    pending_io: list[str] = Field(default_factory=list)
    continue_as_new_at_history: int | None = Field(
        None,
        description="Continue as new once the history is this long, even before the server "
        "suggests it (drills and tests exercise continue-as-new with it).",
    )


class RecordEventInput(BaseModel):
    event: AnyEvent
    request_id: str = Field(
        description="Echoed in the result: a different one back means Temporal returned the "
        "stored result of an earlier Update with the same id, i.e. a duplicate."
    )


class RecordEventResult(BaseModel):
    episode_id: str
    event_id: str
    status: Literal["accepted", "duplicate"]
    request_id: str


# Error types of Update rejections (ApplicationError.type), read by the API.
REFUSED_ERROR = "EventRefused"
DUPLICATE_ERROR = "DuplicateEvent"


class EpisodeSummaryForChild(BaseModel):
    """What an episode tells its child's record (no free text)."""

    episode_id: str
    reported_at: dt.datetime
    found_at: dt.datetime | None = None
    found_postcode_key: str | None = None
    risk_level: str | None = None
    flags: list[str] = Field(default_factory=list)
    status: str = "missing"


class ChildHistory(BaseModel):
    """The child record's answer to an episode: repeat counts and places found repeatedly."""

    counts_by_days: dict[int, int]
    repeated_location_keys: list[str] = Field(default_factory=list)


class SyncChildRecordInput(BaseModel):
    child_ref: str
    summary: EpisodeSummaryForChild
    windows_days: list[int]
    same_location_episodes: int
    max_history_events: int | None = None


class RegisterEpisodeInput(BaseModel):
    summary: EpisodeSummaryForChild
    windows_days: list[int]
    same_location_episodes: int


class CheckLocationInput(BaseModel):
    postcode_key: str


class Paged(BaseModel):
    """Who a triggered alert went to, and the signed link they were sent."""

    recipient: Recipient | None = None
    ack_url: str | None = None
    unstaffed: bool = False


class DeliverAlertsInput(BaseModel):
    """The durable retry of a batch: `done` names the sinks the first, local round already
    reached (so they are not sent it again) and `counted` says that round counted the alerts.
    `paged`, when given, is who the episode recorded as paged: every round sends to them."""

    batch: AlertBatch
    done: list[str] = []
    counted: bool = False
    paged: dict[str, Paged] | None = None


class DeliverAlertsOnceInput(BaseModel):
    batch: AlertBatch
    paged: dict[str, Paged] | None = None


class AddressAlertsInput(BaseModel):
    """A triggered batch to address on its own (before any sink in runs from before the one
    delivery round; after a round that crashed in runs since), so who was paged is in the
    episode's state whatever the delivery does."""

    batch: AlertBatch


class AddressedAlerts(BaseModel):
    paged: dict[str, Paged] = Field(default_factory=dict, description="By alert id.")


class AlertDelivery(BaseModel):
    delivered: list[str]
    failed: list[str]
    paged: dict[str, Paged] = Field(default_factory=dict, description="By alert id.")
