"""One policy's counts over many episodes, kept where the episodes ran.

A year raises millions of alerts (six or so per event under a strict policy). Counted in the
process that simulated them and summed afterwards, they cost the parent a few counters per job
rather than a tuple per alert to unpickle and hold."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")
NIGHT_FROM, NIGHT_TO = 22, 7  # 22:00 to 07:00 London time
HOURS_OF_WEEK = 168
LATENESS = (
    ("under_1h", 60.0),
    ("1h_to_4h", 240.0),
    ("4h_to_24h", 1440.0),
    ("1d_to_3d", 4320.0),
    ("over_3d", float("inf")),
)
CLOSURE_TYPES = ("mispers.closure.requested", "mispers.closure.approved")


def band(minutes: float) -> str:
    return next(name for name, limit in LATENESS if minutes < limit)


def hour_of_week(at: dt.datetime) -> int:
    local = at.astimezone(LONDON)
    return local.weekday() * 24 + local.hour


def is_night(at: dt.datetime) -> bool:
    hour = at.astimezone(LONDON).hour
    return hour >= NIGHT_FROM or hour < NIGHT_TO


def _place(hour: int) -> tuple[int, bool]:
    """A UTC hour (since the epoch) as London's hour of the week, and whether it is night."""
    at = dt.datetime.fromtimestamp(hour * 3600, dt.UTC)
    return hour_of_week(at), is_night(at)


@dataclass
class Tally:
    by_rank: Counter[str] = field(default_factory=Counter)
    night: Counter[str] = field(default_factory=Counter)
    by_hour_of_week: dict[str, list[int]] = field(default_factory=dict)
    overdue: Counter[str] = field(default_factory=Counter)
    lateness: Counter[str] = field(default_factory=Counter)
    lateness_by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    closures_refused: int = 0

    def add_alerts(self, alerts: Iterable[tuple[str, dt.datetime]]) -> None:
        """(rank, raised at) pairs. London's clock differs from UTC by whole hours, so each UTC
        hour is placed in London's week once, through a cache shared by every tally."""
        for rank, raised_at in alerts:
            self.by_rank[rank] += 1
            hour = int(raised_at.timestamp()) // 3600
            if (place := _PLACED.get(hour)) is None:
                place = _PLACED[hour] = _place(hour)
            if (counts := self.by_hour_of_week.get(rank)) is None:
                counts = self.by_hour_of_week[rank] = [0] * HOURS_OF_WEEK
            counts[place[0]] += 1
            if place[1]:
                self.night[rank] += 1

    def add_overdue(self, overdue: Iterable[tuple[str, float]]) -> None:
        for kind, minutes in overdue:
            self.overdue[kind] += 1
            self.lateness[band(minutes)] += 1
            self.lateness_by_kind.setdefault(kind, Counter())[band(minutes)] += 1

    def add_refused(self, refused: Iterable[tuple[str, str, str]]) -> None:
        for _, event_type, code in refused:
            self.refused[code] += 1
            if event_type in CLOSURE_TYPES:
                self.closures_refused += 1

    def merge(self, other: Tally) -> None:
        self.by_rank.update(other.by_rank)
        self.night.update(other.night)
        for rank, counts in other.by_hour_of_week.items():
            mine = self.by_hour_of_week.setdefault(rank, [0] * HOURS_OF_WEEK)
            for hour, n in enumerate(counts):
                mine[hour] += n
        self.overdue.update(other.overdue)
        self.lateness.update(other.lateness)
        for kind, bands in other.lateness_by_kind.items():
            self.lateness_by_kind.setdefault(kind, Counter()).update(bands)
        self.refused.update(other.refused)
        self.closures_refused += other.closures_refused


_PLACED: dict[int, tuple[int, bool]] = {}
