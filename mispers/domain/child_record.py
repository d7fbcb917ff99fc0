"""A child's record across episodes: repeat counts and places found (pure rules).

65% of child missing incidents are repeats and the chance of another is highest in the weeks
after one: the counts are per window, always including the episode asking."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from pydantic import BaseModel, Field

from mispers.domain.messages import ChildHistory, EpisodeSummaryForChild


class PlaceFound(BaseModel):
    postcode_key: str
    episodes: int
    flagged: bool = False


class ChildRecordState(BaseModel):
    child_ref: str
    episodes: list[EpisodeSummaryForChild] = Field(default_factory=list)
    repeat: dict[int, int] = Field(
        default_factory=dict, description="Counts as of the latest episode's report."
    )
    places_found: list[PlaceFound] = Field(default_factory=list)
    flagged_locations: list[str] = Field(default_factory=list)
    continued_as_new: int = 0


# The record continues as new once its history reaches this many events (or the server
# suggests it), so a child with many episodes never has a history too long to replay.
DEFAULT_MAX_HISTORY_EVENTS = 2000


class ChildRecordInput(BaseModel):
    """The `ChildRecord` workflow's input: here, beside the state it carries, because both the
    workflow and the activity that starts it build one."""

    child_ref: str
    carried_state: ChildRecordState | None = None
    max_history_events: int = DEFAULT_MAX_HISTORY_EVENTS


def record_episode(
    record: ChildRecordState,
    summary: EpisodeSummaryForChild,
    windows_days: list[int],
    same_location_episodes: int,
) -> ChildHistory:
    """Insert or update an episode's summary and answer with the child's history as of it."""
    record.episodes = [e for e in record.episodes if e.episode_id != summary.episode_id]
    record.episodes.append(summary)
    record.episodes.sort(key=lambda e: e.reported_at)
    counts = count_in_windows(record.episodes, summary.reported_at, windows_days)
    latest = record.episodes[-1].reported_at
    record.repeat = count_in_windows(record.episodes, latest, windows_days)
    found = Counter(e.found_postcode_key for e in record.episodes if e.found_postcode_key)
    flagged = sorted(k for k, n in found.items() if n >= same_location_episodes)
    record.flagged_locations = flagged
    record.places_found = [
        PlaceFound(postcode_key=k, episodes=n, flagged=k in flagged)
        for k, n in sorted(found.items())
    ]
    return ChildHistory(counts_by_days=counts, repeated_location_keys=flagged)


def count_in_windows(
    episodes: list[EpisodeSummaryForChild], at: dt.datetime, windows_days: list[int]
) -> dict[int, int]:
    """Episodes reported in the `days` up to and including `at`, for each window."""
    return {
        days: sum(1 for e in episodes if at - dt.timedelta(days=days) < e.reported_at <= at)
        for days in sorted(set(windows_days))
    }
