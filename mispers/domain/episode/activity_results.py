"""Facts learnt by activities (the child's record, the locations register) folded into the
episode. They arrive with no event of their own, so they happen at `now`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from mispers.domain.episode.context import Ctx, Effects, K
from mispers.domain.episode.grading import reconcile_risk
from mispers.domain.episode.obligations import add, information_review, require_strategy_meeting
from mispers.domain.locations import EXPLOITATION_CATEGORIES, LocationOfConcern
from mispers.domain.state import EpisodeState, LocationHit, RepeatCounts
from mispers.domain.types import EpisodeStatus, Flag
from mispers.policy.model import Policy


def apply_child_history(
    state: EpisodeState,
    counts_by_days: dict[int, int],
    repeated_location_keys: Iterable[str],
    policy: Policy,
    now: dt.datetime,
) -> None:
    """The child's record answered: repeat counts (this episode included) and places found
    before. Repeat episodes only ever raise risk."""
    if state.status is EpisodeStatus.CLOSED:
        return
    ctx = Ctx(state=state, policy=policy, now=now, event=None, effects=Effects())
    state.repeat = RepeatCounts(
        episodes_30d=counts_by_days.get(30, 0),
        episodes_90d=counts_by_days.get(90, 0),
        episodes_365d=counts_by_days.get(365, 0),
        by_days=dict(counts_by_days),
        known=True,
    )
    for threshold in policy.repeat.thresholds:
        if counts_by_days.get(threshold.days, 0) < threshold.episodes:
            continue
        if threshold.flag_repeat:
            state.add_flag(Flag.REPEAT)
        why = f"repeat: {counts_by_days[threshold.days]} episodes in {threshold.days} days"
        for kind in threshold.requires:
            if kind is K.STRATEGY_MEETING:
                require_strategy_meeting(ctx, why, now)
            elif not any(o.kind is kind for o in state.obligations):
                add(ctx, kind, now, reason=why)
    if state.found_postcode_key and state.found_postcode_key in set(repeated_location_keys):
        state.add_flag(Flag.REPEAT_LOCATION)
    reconcile_risk(ctx)


def apply_location_hits(
    state: EpisodeState,
    hits: list[LocationOfConcern],
    event_id: str,
    policy: Policy,
    now: dt.datetime,
) -> None:
    """A sighting or found location is on the register: high risk, flags, a strategy meeting and
    the person linked to the place to trace (HMICFRS: a 15-year-old found at an RSO's address)."""
    if not hits or state.status is EpisodeStatus.CLOSED:
        return
    ctx = Ctx(state=state, policy=policy, now=now, event=None, effects=Effects())
    for hit in hits:
        if any(
            h.postcode_key == hit.postcode_key and h.reference == hit.reference
            for h in state.location_hits
        ):
            continue
        state.location_hits.append(
            LocationHit(
                postcode_key=hit.postcode_key,
                category=hit.category,
                reference=hit.reference,
                event_id=event_id,
            )
        )
        state.add_flag(Flag.LOCATION_OF_CONCERN)
        if hit.category in EXPLOITATION_CATEGORIES:
            state.add_flag(Flag.CSE)
        require_strategy_meeting(ctx, f"location of concern ({hit.category})", now)
        add(
            ctx,
            K.LINKED_PERSON_RESOLUTION,
            now,
            oid=f"{K.LINKED_PERSON_RESOLUTION.value}:{hit.reference}",
            subject=hit.reference,
            reason=f"person linked to a location of concern ({hit.category})",
        )
        information_review(ctx, "location of concern")
    reconcile_risk(ctx)
