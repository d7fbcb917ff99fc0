"""The duty rota (`MISPERS_ROTA`): who is on duty for each rank, so an alert pages a person.

A CSV file with header `rank,person_id,email,days,start,end`: `days` as `Mon-Fri`, `Sat,Sun`
(quoted in the CSV) or `*`; `start`/`end` as `HH:MM` on the wall clock in Europe/London, so a
shift keeps its local hours across the clock changes; an `end` at or before `start` runs past
midnight into the next day. The first matching row of a rank wins. Re-read when the file
changes; a malformed file is refused with its line and reason and the last good copy is kept.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from mispers.domain.state import Recipient
from mispers.domain.types import Rank
from mispers.logs import get_logger

log = get_logger("mispers.rota")

LONDON = ZoneInfo("Europe/London")
HEADER = ["rank", "person_id", "email", "days", "start", "end"]
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_PERSON = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+$")


class RotaError(Exception):
    """A rota the service will not use; the message names the file, the line and the rule."""


@dataclass(frozen=True)
class Shift:
    rank: Rank
    person_id: str
    email: str
    days: frozenset[int]  # Monday = 0
    start: dt.time
    end: dt.time

    def covers(self, moment: dt.datetime) -> bool:
        local = moment.astimezone(LONDON)
        clock, today = local.time(), local.weekday()
        overnight = self.end <= self.start
        if today in self.days and clock >= self.start and (overnight or clock < self.end):
            return True
        yesterday = (today - 1) % 7
        return overnight and yesterday in self.days and clock < self.end

    @property
    def recipient(self) -> Recipient:
        return Recipient(person_id=self.person_id, email=self.email)


def parse_rota(text: str, name: str = "rota") -> list[Shift]:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip().lower() for c in rows[0]] != HEADER:
        raise RotaError(f"{name}: line 1: the header must be {','.join(HEADER)}")
    shifts: list[Shift] = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(HEADER):
            raise RotaError(f"{name}: line {number}: {len(row)} fields, expected {len(HEADER)}")
        rank, person, email, days, start, end = (cell.strip() for cell in row)
        try:
            shifts.append(
                Shift(
                    rank=_rank(rank),
                    person_id=_checked(person, _PERSON, "person_id is 1-64 of A-Za-z0-9._:-"),
                    email=_checked(email, _EMAIL, "email is not an e-mail address"),
                    days=_days(days),
                    start=_time(start, "start"),
                    end=_time(end, "end"),
                )
            )
        except ValueError as exc:
            raise RotaError(f"{name}: line {number}: {exc}") from None
    return shifts


def on_duty(shifts: list[Shift], rank: Rank, moment: dt.datetime) -> Recipient | None:
    return next((s.recipient for s in shifts if s.rank is rank and s.covers(moment)), None)


def person(shifts: list[Shift], person_id: str) -> Recipient | None:
    return next((s.recipient for s in shifts if s.person_id == person_id), None)


def _rank(value: str) -> Rank:
    try:
        return Rank(value.lower())
    except ValueError:
        ranks = ", ".join(r.value for r in Rank)
        raise ValueError(f"rank {value!r} is not one of {ranks}") from None


def _checked(value: str, pattern: re.Pattern[str], rule: str) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(rule)
    return value


def _days(value: str) -> frozenset[int]:
    if value.strip() == "*":
        return frozenset(range(7))
    days: set[int] = set()
    for part in value.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"days {value!r}: write Mon-Fri, Sat,Sun or *")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.update(DAYS.index(d) % 7 for d in _wrap(a, b))
    return frozenset(days)


def _wrap(a: int, b: int) -> list[str]:
    """`Fri-Mon` runs over the weekend."""
    span = (b - a) % 7
    return [DAYS[(a + i) % 7] for i in range(span + 1)]


def _time(value: str, field: str) -> dt.time:
    match = _TIME.fullmatch(value)
    if not match:
        raise ValueError(f"{field} {value!r} is not HH:MM (00:00-23:59)")
    return dt.time(int(match.group(1)), int(match.group(2)))


class RotaFile:
    """Keeps the last good copy: a rota broken while running is reported, not obeyed."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._shifts: list[Shift] = []
        self._stamp: tuple[int, int] | None = None
        if path is not None:
            self._shifts = self._read()  # a malformed rota stops the worker at start

    def _read(self) -> list[Shift]:
        assert self.path is not None
        try:
            stat = os.stat(self.path)
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RotaError(f"{self.path}: cannot read: {exc.strerror}") from None
        shifts = parse_rota(text, str(self.path))
        self._stamp = (stat.st_mtime_ns, stat.st_size)
        return shifts

    def shifts(self) -> list[Shift]:
        if self.path is None:
            return []
        try:
            stat = os.stat(self.path)
            if (stat.st_mtime_ns, stat.st_size) != self._stamp:
                self._shifts = self._read()
                log.info("rota reloaded", shifts=len(self._shifts))
        except RotaError as exc:
            log.error("rota not reloaded; keeping the last good copy", error=str(exc))
        except OSError as exc:
            log.error("rota unreadable; keeping the last good copy", error=exc.strerror)
        return self._shifts

    def on_duty(self, rank: Rank, moment: dt.datetime) -> Recipient | None:
        return on_duty(self.shifts(), rank, moment)

    def person(self, person_id: str) -> Recipient | None:
        return person(self.shifts(), person_id)
