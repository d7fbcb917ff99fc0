"""Dates that parse but cannot be true: a report from the year 63, a child born in 4201, a child
last seen after the report was made. Such an event would raise every alert of an episode at once
(or none), so it is refused at the door with the field and the rule, like any malformed field.

These checks need the present (`now`), which workflow code may not read: the API applies them
before an event reaches the engine; the models in mispers.domain.events stay clock-free."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from mispers.domain.events import EpisodeReported, EventBase
from mispers.domain.people import age_on

EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
# Clocks of incident sources drift; an event stamped a little ahead of ours is still plausible.
CLOCK_SKEW = dt.timedelta(minutes=5)
ADULT_AGE = 18
OLDEST_BIRTH = dt.date(1900, 1, 1)
TIME_FIELDS = ("last_seen_at", "seen_at", "found_at")


@dataclass(frozen=True)
class Implausible:
    field: str
    rule: str
    message: str


def implausibilities(event: EventBase, now: dt.datetime) -> list[Implausible]:
    found = _times(event, now)
    if isinstance(event, EpisodeReported):
        found += _report(event)
    return found


def _when(field: str, value: dt.datetime, now: dt.datetime) -> list[Implausible]:
    if value < EARLIEST:
        return [Implausible(field, "before_earliest", f"must not be before {EARLIEST.date()}")]
    if value > now + CLOCK_SKEW:
        return [Implausible(field, "in_the_future", "must not be in the future")]
    return []


def _times(event: EventBase, now: dt.datetime) -> list[Implausible]:
    found = _when("time", event.time, now)
    data = getattr(event, "data", None)
    for name in TIME_FIELDS:
        value = getattr(data, name, None)
        if isinstance(value, dt.datetime):
            found += _when(f"data.{name}", value, now)
    return found


def _report(event: EpisodeReported) -> list[Implausible]:
    found = []
    born = event.data.child.date_of_birth
    reported = event.time.date()
    if born > reported or born < OLDEST_BIRTH:
        found.append(
            Implausible(
                "data.child.date_of_birth",
                "implausible_date_of_birth",
                f"must be between {OLDEST_BIRTH} and the day of the report",
            )
        )
    elif age_on(born, reported) >= ADULT_AGE:
        found.append(
            Implausible(
                "data.child.date_of_birth",
                "not_a_child",
                f"the person was {ADULT_AGE} or older when reported: Mispers handles children",
            )
        )
    if event.data.last_seen_at > event.time + CLOCK_SKEW:
        found.append(
            Implausible("data.last_seen_at", "after_report", "must not be after the report")
        )
    return found
