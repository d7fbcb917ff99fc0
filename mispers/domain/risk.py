"""Risk floors and the downgrade guard.

Repeat episodes only ever raise risk (ACPO 2013); exploitation indicators, locations and people of
concern and disclosed crimes set the floor to high; a grading below the floor is refused, and a
downgrade resting on the child's history ("always comes back") needs a supervisor."""

from __future__ import annotations

import re
from collections.abc import Iterable

from mispers.domain.state import EpisodeState
from mispers.domain.types import Flag, RiskLevel, max_risk
from mispers.policy.model import Policy

HIGH_FLAGS: dict[str, str] = {
    Flag.CSE: "child sexual exploitation indicator recorded",
    Flag.CCE: "child criminal exploitation indicator recorded",
    Flag.LOCATION_OF_CONCERN: "found at, or sighted at, a location of concern",
    Flag.PERSON_OF_CONCERN: "sighted or found with a person of concern",
    Flag.CRIME_DISCLOSED: "a crime against the child was disclosed",
}

# Risk-factor codes in a report or assessment that are exploitation indicators.
EXPLOITATION_FACTORS: dict[str, Flag] = {
    "cse": Flag.CSE,
    "sexual_exploitation": Flag.CSE,
    "cce": Flag.CCE,
    "criminal_exploitation": Flag.CCE,
    "county_lines": Flag.CCE,
}


def compute_floor(state: EpisodeState, policy: Policy) -> tuple[RiskLevel, list[str]]:
    """The lowest grade the rules allow now, with every reason that holds it there."""
    floor = RiskLevel.VERY_LOW
    reasons: list[str] = []
    if state.child is not None:
        floor = policy.risk.child_min_level
        reasons.append(f"child: every missing child is at least {floor.value} (policy)")
    for threshold in policy.repeat.thresholds:
        count = state.repeat.by_days.get(threshold.days, 0)
        if count >= threshold.episodes:
            floor = max_risk(floor, threshold.floor)
            reasons.append(
                f"repeat: {count} episodes in {threshold.days} days "
                f"(threshold {threshold.episodes}) holds at least {threshold.floor.value}"
            )
    for flag, why in HIGH_FLAGS.items():
        if state.has_flag(flag):
            floor = RiskLevel.HIGH
            reasons.append(f"{flag}: {why}")
    return floor, reasons


def exploitation_flags(factors: Iterable[str]) -> set[Flag]:
    return {EXPLOITATION_FACTORS[f.lower()] for f in factors if f.lower() in EXPLOITATION_FACTORS}


_SPACES = re.compile(r"\s+")


def _normalise(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    return _SPACES.sub(" ", text)


def history_phrase(rationale: str, phrases: Iterable[str]) -> str | None:
    """The policy phrase a rationale rests on, if any ("it's what they always do")."""
    text = _normalise(rationale)
    for phrase in phrases:
        if _normalise(phrase) in text:
            return phrase
    return None
