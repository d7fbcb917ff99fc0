"""Words and orderings the pages show: pure functions of the state, so they are unit-tested."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from markupsafe import Markup

from mispers.domain.state import Alert, EpisodeSummary
from mispers.domain.types import RiskLevel

RISK_LABELS = {
    RiskLevel.HIGH: "High",
    RiskLevel.MEDIUM: "Medium",
    RiskLevel.LOW: "Low",
    RiskLevel.VERY_LOW: "Very low",
}
# GOV.UK tag colours (text and background meet WCAG AA contrast in GOV.UK Frontend).
RISK_TAGS = {
    RiskLevel.HIGH: "govuk-tag--red",
    RiskLevel.MEDIUM: "govuk-tag--orange",
    RiskLevel.LOW: "govuk-tag--blue",
    RiskLevel.VERY_LOW: "govuk-tag--grey",
}
FLAG_LABELS = {
    "repeat": "Repeat",
    "cse": "CSE",
    "cce": "CCE",
    "location_of_concern": "Location of concern",
    "repeat_location": "Repeat location",
    "looked_after": "Looked after",
    "crime_disclosed": "Crime disclosed",
    "person_of_concern": "Person of concern",
}


def stamp(at: dt.datetime | None) -> Markup:
    """A time as the pages show it. A plain function, not a template macro: an episode's page
    shows one per timeline entry, alert and obligation, and a macro call costs several times
    more to render."""
    if at is None:
        return Markup("")
    return Markup('<time datetime="{}">{} UTC</time>').format(
        at.isoformat(), at.strftime("%d %b %Y %H:%M:%S")
    )


def humanise(value: str) -> str:
    return value.replace("_", " ").replace(".", " ").capitalize()


def items_of(choices: Mapping[str, str] | Iterable[str]) -> list[dict[str, str]]:
    """GOV.UK radios/select items from {value: label}, or from values (labels humanised)."""
    if isinstance(choices, Mapping):
        return [{"value": k, "text": v} for k, v in choices.items()]
    return [{"value": k, "text": humanise(k)} for k in choices]


def countdown(deadline: dt.datetime | None, now: dt.datetime) -> str:
    """'in 1 h 5 min', 'overdue by 3 min', 'none'; minutes are the finest grain shown."""
    if deadline is None:
        return "none"
    seconds = int((deadline - now).total_seconds())
    late = seconds < 0
    text = duration(abs(seconds))
    return f"overdue by {text}" if late else f"in {text}"


def duration(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def by_urgency(episodes: Iterable[EpisodeSummary]) -> list[EpisodeSummary]:
    """Overdue first (higher risk first, then the most overdue obligations), then the rest by
    next deadline; an episode with no deadline last."""
    far = dt.datetime.max.replace(tzinfo=dt.UTC)

    def key(e: EpisodeSummary) -> tuple[int, int, int, dt.datetime]:
        if not e.overdue_count:
            return (1, 0, 0, e.next_deadline or far)
        severity = e.risk_level.severity if e.risk_level else -1
        return (0, -severity, -e.overdue_count, e.next_deadline or far)

    return sorted(episodes, key=key)


def alert_state(alert: Alert) -> str:
    """`triggered`, `acknowledged` or `resolved` (the alert's lifecycle)."""
    return alert.state.value
