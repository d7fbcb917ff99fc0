"""Baseline against candidate: the figures of the comparison, from each episode's outcome under
both policies. Pure: counting only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from mispers.simulation.run import Compared, Outcome
from mispers.simulation.tally import (
    CLOSURE_TYPES,
    HOURS_OF_WEEK,
    LATENESS,
    Tally,
    hour_of_week,
    is_night,
)

__all__ = ["CLOSURE_TYPES", "compare", "hour_label", "hour_of_week", "is_night", "tally_of"]

RANKS = ("officer", "sergeant", "inspector", "superintendent")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
CHANGED_SHOWN = 20
CAVEAT = (
    "People's actions are replayed as they happened: the simulation shows what the candidate "
    "policy would have demanded and escalated on the same events, not how people would have "
    "behaved under it (an officer paged sooner might have acted sooner)."
)


def hour_label(how: int) -> str:
    return f"{DAYS[how // 24]} {how % 24:02d}:00"


def tally_of(outcomes: Iterable[Outcome]) -> Tally:
    """Count outcomes that kept their alerts (a small set, or a faithfulness check)."""
    tally = Tally()
    for o in outcomes:
        tally.add_alerts((a.rank, a.raised_at) for a in o.alerts)
        tally.add_overdue(o.overdue)
        tally.add_refused(o.refused)
    return tally


def _side(tally: Tally, days: int) -> dict[str, Any]:
    by_rank = tally.by_rank
    ranks = [r for r in RANKS if by_rank[r]] + sorted(set(by_rank) - set(RANKS))
    total = sum(by_rank.values())
    how = {r: tally.by_hour_of_week.get(r, [0] * HOURS_OF_WEEK) for r in ranks}
    busiest: dict[str, dict[str, Any]] = {}
    for r in ranks:
        counts = how[r]
        top = max(range(HOURS_OF_WEEK), key=lambda h: counts[h])
        busiest[r] = {"hour": hour_label(top), "alerts": counts[top]}
    night = tally.night
    return {
        "alerts_by_rank": {r: by_rank[r] for r in ranks},
        "alerts_total": total,
        "alerts_per_day_by_rank": {r: round(by_rank[r] / max(days, 1), 2) for r in ranks},
        "busiest_hour_of_week_by_rank": busiest,
        "night_share_by_rank": {r: round(night[r] / by_rank[r], 3) for r in ranks},
        "night_share": round(sum(night.values()) / total, 3) if total else 0.0,
        "alerts_by_hour_of_week_by_rank": how,
        "overdue_by_kind": dict(sorted(tally.overdue.items())),
        "overdue_total": sum(tally.overdue.values()),
        "overdue_by_lateness": {name: tally.lateness[name] for name, _ in LATENESS},
        "overdue_by_kind_and_lateness": {
            k: {name: c[name] for name, _ in LATENESS}
            for k, c in sorted(tally.lateness_by_kind.items())
        },
        "refused_events_by_reason": dict(sorted(tally.refused.items())),
        "closures_refused": tally.closures_refused,
    }


def _change(c: Compared) -> dict[str, Any]:
    b, k = c.baseline, c.candidate
    refused_b = {r[0] for r in b.refused}
    refused_k = {r[0] for r in k.refused}
    grades_differ = b.grades != k.grades or b.floor != k.floor
    score = (
        abs(k.alert_count - b.alert_count)
        + abs(len(k.overdue) - len(b.overdue))
        + 3 * len(refused_b ^ refused_k)
        + (2 if grades_differ else 0)
    )
    return {
        "episode_id": c.episode_id,
        "score": score,
        "alerts": [b.alert_count, k.alert_count],
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
    tallies: tuple[Tally, Tally] | None = None,
) -> dict[str, Any]:
    """`tallies`: each policy's counts as the workers kept them; without them, the counts are
    taken from the outcomes' own alerts."""
    days = (last - first).days + 1
    if tallies is None:
        tallies = (tally_of(c.baseline for c in compared), tally_of(c.candidate for c in compared))
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
        "baseline": _side(tallies[0], days),
        "candidate": _side(tallies[1], days),
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
