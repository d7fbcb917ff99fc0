"""Baseline against candidate: the figures of the comparison, from each episode's outcome under
both policies. Pure: counting only."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from mispers.simulation.run import Compared, Outcome

LONDON = ZoneInfo("Europe/London")
RANKS = ("officer", "sergeant", "inspector", "superintendent")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
NIGHT_FROM, NIGHT_TO = 22, 7  # 22:00 to 07:00 London time
LATENESS = (
    ("under_1h", 60.0),
    ("1h_to_4h", 240.0),
    ("4h_to_24h", 1440.0),
    ("1d_to_3d", 4320.0),
    ("over_3d", float("inf")),
)
CLOSURE_TYPES = ("mispers.closure.requested", "mispers.closure.approved")
CHANGED_SHOWN = 20
CAVEAT = (
    "People's actions are replayed as they happened: the simulation shows what the candidate "
    "policy would have demanded and escalated on the same events, not how people would have "
    "behaved under it (an officer paged sooner might have acted sooner)."
)


def hour_of_week(at: dt.datetime) -> int:
    local = at.astimezone(LONDON)
    return local.weekday() * 24 + local.hour


def hour_label(how: int) -> str:
    return f"{DAYS[how // 24]} {how % 24:02d}:00"


def is_night(at: dt.datetime) -> bool:
    hour = at.astimezone(LONDON).hour
    return hour >= NIGHT_FROM or hour < NIGHT_TO


def band(minutes: float) -> str:
    return next(name for name, limit in LATENESS if minutes < limit)


def _side(outcomes: Iterable[Outcome], days: int) -> dict[str, Any]:
    by_rank: Counter[str] = Counter()
    night: Counter[str] = Counter()
    how: dict[str, list[int]] = {r: [0] * 168 for r in RANKS}
    overdue: Counter[str] = Counter()
    lateness: Counter[str] = Counter()
    by_kind_lateness: dict[str, Counter[str]] = {}
    refused: Counter[str] = Counter()
    closures_refused = 0
    # A year's millions of alerts fall in its 8,760 hours, and London's clock differs from UTC
    # by whole hours: each UTC hour is placed in the local week once.
    placed: dict[int, tuple[int, bool]] = {}
    for o in outcomes:
        for a in o.alerts:
            by_rank[a.rank] += 1
            hour = int(a.raised_at.timestamp()) // 3600
            if (place := placed.get(hour)) is None:
                local = a.raised_at.astimezone(LONDON)
                night_hour = local.hour >= NIGHT_FROM or local.hour < NIGHT_TO
                place = placed[hour] = (local.weekday() * 24 + local.hour, night_hour)
            how.setdefault(a.rank, [0] * 168)[place[0]] += 1
            if place[1]:
                night[a.rank] += 1
        for kind, minutes in o.overdue:
            overdue[kind] += 1
            lateness[band(minutes)] += 1
            by_kind_lateness.setdefault(kind, Counter())[band(minutes)] += 1
        for _, kind, code in o.refused:
            refused[code] += 1
            if kind in CLOSURE_TYPES:
                closures_refused += 1
    ranks = [r for r in RANKS if by_rank[r]] + sorted(set(by_rank) - set(RANKS))
    total = sum(by_rank.values())
    busiest: dict[str, dict[str, Any]] = {}
    for r in ranks:
        counts = how[r]
        top = max(range(168), key=lambda h: counts[h])
        busiest[r] = {"hour": hour_label(top), "alerts": counts[top]}
    return {
        "alerts_by_rank": {r: by_rank[r] for r in ranks},
        "alerts_total": total,
        "alerts_per_day_by_rank": {r: round(by_rank[r] / max(days, 1), 2) for r in ranks},
        "busiest_hour_of_week_by_rank": busiest,
        "night_share_by_rank": {r: round(night[r] / by_rank[r], 3) for r in ranks},
        "night_share": round(sum(night.values()) / total, 3) if total else 0.0,
        "alerts_by_hour_of_week_by_rank": {r: how[r] for r in ranks},
        "overdue_by_kind": dict(sorted(overdue.items())),
        "overdue_total": sum(overdue.values()),
        "overdue_by_lateness": {name: lateness[name] for name, _ in LATENESS},
        "overdue_by_kind_and_lateness": {
            k: {name: c[name] for name, _ in LATENESS} for k, c in sorted(by_kind_lateness.items())
        },
        "refused_events_by_reason": dict(sorted(refused.items())),
        "closures_refused": closures_refused,
    }


def _change(c: Compared) -> dict[str, Any]:
    b, k = c.baseline, c.candidate
    refused_b = {r[0] for r in b.refused}
    refused_k = {r[0] for r in k.refused}
    grades_differ = b.grades != k.grades or b.floor != k.floor
    score = (
        abs(len(k.alerts) - len(b.alerts))
        + abs(len(k.overdue) - len(b.overdue))
        + 3 * len(refused_b ^ refused_k)
        + (2 if grades_differ else 0)
    )
    return {
        "episode_id": c.episode_id,
        "score": score,
        "alerts": [len(b.alerts), len(k.alerts)],
        "overdue": [len(b.overdue), len(k.overdue)],
        "refused_events": [len(refused_b), len(refused_k)],
        "closure_refused": [
            any(r[1] in CLOSURE_TYPES for r in b.refused),
            any(r[1] in CLOSURE_TYPES for r in k.refused),
        ],
        "grades": [b.grades, k.grades] if grades_differ else None,
        "floor": [b.floor, k.floor],
    }


def compare(
    compared: list[Compared],
    first: dt.date,
    last: dt.date,
    labels: dict[str, str],
    weaker: list[dict[str, str]],
    source: str,
) -> dict[str, Any]:
    days = (last - first).days + 1
    changes = [_change(c) for c in compared]
    changed = sorted(
        (c for c in changes if c["score"]), key=lambda c: (-c["score"], c["episode_id"])
    )
    closures_now_refused = [
        c["episode_id"] for c in changes if c["closure_refused"][1] and not c["closure_refused"][0]
    ]
    grades_differ = [c["episode_id"] for c in changes if c["grades"] is not None]
    return {
        "period": {"from": first.isoformat(), "to": last.isoformat(), "days": days},
        "source": source,
        "policies": labels,
        "caveat": CAVEAT,
        "weaker_than_national": weaker,
        "episodes": len(compared),
        "events": sum(c.events for c in compared),
        "baseline": _side((c.baseline for c in compared), days),
        "candidate": _side((c.candidate for c in compared), days),
        "episodes_changed": len(changed),
        "closures_refused_only_under_candidate": {
            "count": len(closures_now_refused),
            "episodes": sorted(closures_now_refused)[:CHANGED_SHOWN],
        },
        "risk_grades_differ": {
            "count": len(grades_differ),
            "episodes": sorted(grades_differ)[:CHANGED_SHOWN],
        },
        "changed_most": changed[:CHANGED_SHOWN],
    }
