"""What every rule step shares: the state being changed, the policy, the instant and the event.

`event` is None when the step comes from time passing or an activity's answer rather than from a
recorded event; such a step happens at `now`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from mispers.domain.events import EventBase
from mispers.domain.state import EpisodeState
from mispers.domain.types import ObligationKind
from mispers.policy.model import Policy

K = ObligationKind
SYSTEM_ACTOR = "mispers"
PERIODIC_REVIEW = "risk_review"
INFO_REVIEW = "risk_review:info"
PERSON_OF_CONCERN_RELATIONS = frozenset({"suspect", "harbourer", "adult_of_concern"})
EXPLOITATION_SCREENING_FACTOR = "exploitation_screening"


@dataclass
class LocationCheck:
    """A location the workflow must look up in the register (I/O, so an activity)."""

    postcode_key: str
    event_id: str


@dataclass
class Effects:
    """What applying an event asks of the workflow beyond the state change."""

    child_sync: bool = False
    location_checks: list[LocationCheck] = field(default_factory=list)


@dataclass
class Ctx:
    state: EpisodeState
    policy: Policy
    now: dt.datetime
    event: EventBase | None
    effects: Effects

    @property
    def at(self) -> dt.datetime:
        """When the event happened, never later than now (clock skew cannot delay a clock)."""
        if self.event is None:
            return self.now
        return min(self.event.time, self.now)
