"""Builders of contract events for tests: valid by default, every field overridable."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from pydantic import TypeAdapter

from mispers.domain.events import AnyEvent, EventBase

_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyEvent)
_ids = itertools.count(1)

CHILD_NAME = "Jessica Testchild"
CHILD_DOB = "2011-03-14"
POSTCODE = "SW1A 1AA"

DEFAULT_DATA: dict[str, dict[str, Any]] = {
    "mispers.episode.reported": {
        "child": {
            "child_ref": "C-1",
            "date_of_birth": CHILD_DOB,
            "name": CHILD_NAME,
            "looked_after": False,
            "responsible_authority": "Lambeth",
        },
        "last_seen_at": "2026-01-01T10:00:00Z",
        "last_seen_location": {"description": "outside school", "postcode": POSTCODE},
        "initial_risk": "medium",
        "reported_by": {"role": "parent"},
        "officer_id": "PC-101",
    },
    "mispers.risk.assessed": {
        "level": "high",
        "rationale": "new information from school",
        "assessed_by": "SGT-7",
        "rank": "sergeant",
    },
    "mispers.social_services.contacted": {
        "direction": "outbound",
        "authority": "Lambeth",
        "contact_name": "Duty social worker",
        "method": "phone",
        "purpose": "missing_notification",
        "summary": "told of the missing episode",
        "officer_id": "PC-101",
    },
    "mispers.enquiry.recorded": {
        "kind": "systems_checked",
        "outcome": "two previous episodes",
        "officer_id": "PC-101",
    },
    "mispers.linked_person.identified": {
        "person_ref": "P-1",
        "relation": "suspect",
        "officer_id": "PC-101",
    },
    "mispers.linked_person.resolved": {
        "person_ref": "P-1",
        "outcome": "eliminated",
        "rationale": "alibi confirmed",
        "officer_id": "PC-101",
    },
    "mispers.sighting.reported": {
        "seen_at": "2026-01-01T12:00:00Z",
        "location": {"description": "bus station", "postcode": "E1 6AN"},
    },
    "mispers.child.found": {
        "found_at": "2026-01-01T14:00:00Z",
        "location": {"description": "friend's house", "postcode": "SE1 7PB"},
        "found_by": "PC-102",
        "seen_in_person": True,
    },
    "mispers.safe_and_well.completed": {
        "officer_id": "PC-102",
        "in_person": True,
        "outcome": "well, no concerns",
    },
    "mispers.return_interview.completed": {"provider": "Lambeth RHI", "outcome": "held"},
    "mispers.crime.recorded": {
        "crime_ref": "CR-1",
        "classification": "sexual activity with a child",
        "officer_id": "PC-102",
    },
    "mispers.strategy_meeting.held": {
        "chair": "DI-3",
        "agencies": ["police", "social care"],
        "outcome": "safety plan agreed",
    },
    "mispers.closure.requested": {"officer_id": "PC-101", "rationale": "all steps done"},
    "mispers.closure.approved": {
        "supervisor_id": "SGT-7",
        "rank": "sergeant",
        "rationale": "reviewed",
    },
    "mispers.alert.acknowledged": {"alert_id": "x", "by": "INSP-1"},
}


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def envelope(
    kind: str,
    episode_id: str,
    time: dt.datetime | str,
    data: dict[str, Any] | None = None,
    *,
    event_id: str | None = None,
    source: str = "test/cad",
) -> dict[str, Any]:
    """A CloudEvents structured-mode body (as sent over HTTP)."""
    full_type = kind if kind.startswith("mispers.") else f"mispers.{kind}"
    return {
        "specversion": "1.0",
        "id": event_id or f"ev-{next(_ids)}",
        "source": source,
        "type": full_type,
        "subject": episode_id,
        "time": time if isinstance(time, str) else time.isoformat(),
        "data": merge(DEFAULT_DATA[full_type], data or {}),
    }


def event(
    kind: str,
    episode_id: str,
    time: dt.datetime | str,
    data: dict[str, Any] | None = None,
    **kwargs: Any,
) -> EventBase:
    """The validated domain event (what the API hands to the engine)."""
    body = envelope(kind, episode_id, time, data, **kwargs)
    body.pop("specversion")
    parsed: EventBase = _ADAPTER.validate_python(body)
    return parsed
