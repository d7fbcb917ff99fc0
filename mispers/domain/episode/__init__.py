"""The episode's rules as plain functions over `EpisodeState`.

The workflow calls `check_event` from its Update validator (refusals never touch state),
`apply_event` from the Update handler, `advance` when a deadline passes, and `next_wakeup` to know
how long to sleep. Everything here is deterministic: time is always the `now` passed in.

This module is the one door callers use (`from mispers.domain import episode as rules`); the rules
themselves live in one module per job: `checks` (refusals), `handlers` (what an event changes),
`timing` (what time brings), `obligations`, `grading` (the risk grade) and `activity_results`
(facts learnt by activities).
"""

from __future__ import annotations

from mispers.domain.episode.activity_results import apply_child_history, apply_location_hits
from mispers.domain.episode.checks import check_event
from mispers.domain.episode.context import Effects, LocationCheck
from mispers.domain.episode.handlers import apply_event, crime_hint
from mispers.domain.episode.timing import (
    advance,
    advance_and_next_wakeup,
    advance_before,
    next_wakeup,
)
from mispers.domain.state import EpisodeState

__all__ = [
    "Effects",
    "LocationCheck",
    "advance",
    "advance_and_next_wakeup",
    "advance_before",
    "apply_child_history",
    "apply_event",
    "apply_location_hits",
    "check_event",
    "crime_hint",
    "new_state",
    "next_wakeup",
]


def new_state(episode_id: str, policy_version: str) -> EpisodeState:
    return EpisodeState(episode_id=episode_id, policy_version=policy_version)
