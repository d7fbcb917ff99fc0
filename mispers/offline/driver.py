"""One episode's events through the rules, in the order and at the instants the workflow sees.

The workflow (workflows/episode.py) answers each event in its Update handler, then its loop
calls `advance` at that instant and sleeps until `next_wakeup`. The handler first raises what
fell due strictly before the event (`advance_before`), whether or not its timer has fired, so
timers due before an event come first and one due at the event's very instant comes after.
Its I/O (the child's record, the locations register) runs after the event that asked for it,
one lane per kind. This module does the same with the I/O answered in memory at the event's
instant: the child's record by the same pure rules the child-record workflow uses, the register
by a look-up function.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mispers.domain import alert_lifecycle as lifecycle
from mispers.domain import episode as rules
from mispers.domain.child_record import ChildRecordState, record_episode
from mispers.domain.events import EVENT_MODELS, Actor, AlertAcknowledged, EventBase
from mispers.domain.locations import LocationOfConcern
from mispers.domain.messages import EpisodeSummaryForChild, event_key
from mispers.domain.refusals import EventRefused
from mispers.domain.state import Alert, EpisodeState, TimelineEntry
from mispers.domain.types import Rank, Role
from mispers.policy.model import Policy

Lookup = Callable[[str], list[LocationOfConcern]]


# A stream read from a file (a synthetic year, a force's export) names no token: its events were
# accepted when they happened, so they are judged as posted by the highest authority rather than
# all refused for want of an actor. Events recorded by the service carry their own actor.
STREAM_ACTOR = Actor(subject="recorded-stream", role=Role.SUPERVISOR, rank=Rank.SUPERINTENDENT)


def no_locations(_: str) -> list[LocationOfConcern]:
    return []


@dataclass(frozen=True)
class Recorded:
    """An event and the instant the service recorded it (the workflow's `now`); a stream read
    from a file is recorded as it happened."""

    event: EventBase
    recorded_at: dt.datetime

    @classmethod
    def as_it_happened(cls, event: EventBase) -> Recorded:
        return cls(event=event, recorded_at=event.time)

    @classmethod
    def from_timeline(cls, episode_id: str, entry: TimelineEntry) -> Recorded:
        """An event an episode recorded, at the instant it recorded it, by the actor who posted
        it: what the rules saw, whatever the sender's clock or network did meanwhile."""
        event = EVENT_MODELS[entry.type].model_validate(
            {
                "id": entry.event_id,
                "source": entry.source,
                "type": entry.type,
                "subject": episode_id,
                "time": entry.time,
                "actor": entry.posted_by,
                "data": entry.data,
            }
        )
        return cls(event=event, recorded_at=entry.recorded_at)


def recorded_stream(state: EpisodeState) -> list[Recorded]:
    """An episode's events in the order it recorded them (its timeline is in event-time order;
    events recorded at one instant keep their order). The alert steps Mispers writes into the
    timeline itself are results of the rules, not events, so they are left out."""
    entries = sorted(
        (e for e in state.timeline if e.source != lifecycle.SYSTEM_SOURCE),
        key=lambda e: e.recorded_at,
    )
    return [Recorded.from_timeline(state.episode_id, entry) for entry in entries]


class ChildRecords:
    """Every child's record in memory: what the child-record workflows would hold."""

    def __init__(self) -> None:
        self._records: dict[str, ChildRecordState] = {}

    def record(self, child_ref: str) -> ChildRecordState:
        return self._records.setdefault(child_ref, ChildRecordState(child_ref=child_ref))

    def sync(self, state: EpisodeState, policy: Policy, now: dt.datetime) -> None:
        if state.child_ref is None or state.reported_at is None:
            return
        summary = summary_for_child(state)
        repeat = policy.repeat
        windows = sorted({*repeat.windows_days, *(t.days for t in repeat.thresholds)})
        history = record_episode(
            self.record(state.child_ref), summary, windows, repeat.same_location_episodes
        )
        rules.apply_child_history(
            state, history.counts_by_days, history.repeated_location_keys, policy, now
        )


def summary_for_child(state: EpisodeState) -> EpisodeSummaryForChild:
    return EpisodeSummaryForChild(
        episode_id=state.episode_id,
        reported_at=state.reported_at,
        found_at=state.found_at,
        found_postcode_key=state.found_postcode_key,
        risk_level=state.risk.level.value if state.risk else None,
        flags=list(state.flags),
        status=state.status.value,
    )


class EpisodeRun:
    """An episode being driven: events go in one at a time (as the workflow's Updates do), time
    moves forward with `wake_until`; what the rules did is in `state`, `alerts`, `refused`."""

    def __init__(
        self,
        episode_id: str,
        policy: Policy,
        *,
        policy_version: str = "offline",
        records: ChildRecords | None = None,
        lookup: Lookup = no_locations,
        alert_lifecycle: bool = True,
        alert_steps_in_timeline: bool | None = None,
        alert_steps: bool = True,
    ) -> None:
        self.state = rules.new_state(episode_id, policy_version)
        # episodes started since alerts gained their lifecycle run with it (workflow.patched)
        self.state.alert_lifecycle = alert_lifecycle
        # ... and keep their steps in the timeline (workflow.patched as well). A run whose
        # timeline nobody reads for them (a simulation, a synthetic year: the rules, the
        # analytics record and the stream read only the events in it) leaves them out: they
        # are a third of a year's cost.
        self.state.alert_timeline = (
            alert_lifecycle if alert_steps_in_timeline is None else alert_steps_in_timeline
        )
        self.state.discard_alert_outbox()  # the workflow hands it to the sinks; offline: none
        if not alert_steps:
            self.state.discard_alert_steps()
        self.policy = policy
        self.records = records if records is not None else ChildRecords()
        self.lookup = lookup
        self.alerts: list[Alert] = []
        self.refused: list[tuple[str, str]] = []
        self.duplicates = 0
        self._keys: set[str] = set()
        self._synced: EpisodeSummaryForChild | None = None
        self._wake = rules.next_wakeup(self.state, policy)

    @property
    def next_wake(self) -> dt.datetime | None:
        """When the episode's next timer fires. The state changes only in `event` and `tick`,
        and every event is followed by a tick, so the last tick's answer holds."""
        return self._wake

    def tick(self, now: dt.datetime) -> None:
        raised, self._wake = rules.advance_and_next_wakeup(self.state, self.policy, now)
        self.alerts.extend(raised)
        if self.state.alert_lifecycle:
            # the workflow hands these transitions to the sinks; offline there are none
            lifecycle.drain(self.state)

    def wake_until(self, end: dt.datetime, *, inclusive: bool) -> None:
        """Timers that fire before `end` (at `end` too when no event arrives then: an Update
        arriving at the instant a timer fires is handled first)."""
        while (wake := self._wake) is not None and (wake < end or (inclusive and wake == end)):
            self.tick(wake)

    def event(self, item: Recorded) -> bool:
        """Apply one event at its recorded instant; False when it is a duplicate or refused."""
        event, now = item.event, item.recorded_at
        if event.actor is None:
            event = event.model_copy(update={"actor": STREAM_ACTOR})
        key = event_key(event)
        if key in self._keys or self._repeat_ack(event):
            self.duplicates += 1
            return False
        if self.state.alert_lifecycle:
            # The workflow's handler raises first what fell due before the event and its timer
            # has not yet reported (`advance_before`): at wakes read from a history, a timer
            # can be late. The next wake is known, so this costs nothing when none is due.
            self.wake_until(now, inclusive=False)
        try:
            rules.check_event(self.state, event, self.policy, now)
        except EventRefused as refused:
            self.refused.append((event.id, refused.refusal.code))
            return False
        effects = rules.apply_event(self.state, event, self.policy, now)
        self._keys.add(key)
        queue: list[str] = []
        if effects.child_sync:
            queue.append("sync")
        queue += [f"loc:{c.postcode_key}:{c.event_id}" for c in effects.location_checks]
        self.tick(now)
        while queue:
            work = queue.pop(0)
            if work == "sync":
                self._sync(now)
            else:
                _, postcode, event_id = work.split(":", 2)
                hits = self.lookup(postcode)
                if hits:
                    rules.apply_location_hits(self.state, hits, event_id, self.policy, now)
                    if "sync" not in queue:
                        queue.append("sync")
            self.tick(now)
        return True

    def _repeat_ack(self, event: EventBase) -> bool:
        """The same person acknowledging an alert they hold: a duplicate, as in the workflow."""
        return (
            self.state.alert_lifecycle
            and isinstance(event, AlertAcknowledged)
            and lifecycle.is_repeat_ack(self.state, event.data.alert_id, event.data.by)
        )

    def _sync(self, now: dt.datetime) -> None:
        if self.state.child_ref is None or self.state.reported_at is None:
            return
        summary = summary_for_child(self.state)
        if summary == self._synced:
            return  # the workflow skips a sync that would tell the record nothing
        self.records.sync(self.state, self.policy, now)
        self._synced = summary


def run_episode(
    episode_id: str,
    stream: Iterable[Recorded],
    policy: Policy,
    *,
    policy_version: str = "offline",
    until: dt.datetime | None = None,
    records: ChildRecords | None = None,
    lookup: Lookup = no_locations,
    wakes: Iterable[dt.datetime] | None = None,
    alert_steps_in_timeline: bool | None = None,
    alert_steps: bool = True,
) -> EpisodeRun:
    """Apply `stream` (in recorded order) and, when `until` is given, let time run to it as the
    workflow's timers would: each at the instant it falls due, or, given `wakes` (the instants
    a workflow's tasks ran, read from its history), at those instants only. `records` is shared
    between episodes of the same children (repeat counts); episodes must then be run in the
    order they were reported."""
    run = EpisodeRun(
        episode_id,
        policy,
        policy_version=policy_version,
        records=records,
        lookup=lookup,
        alert_steps_in_timeline=alert_steps_in_timeline,
        alert_steps=alert_steps,
    )
    if wakes is not None:
        return _run_at_wakes(run, stream, sorted(wakes), until)
    for item in sorted(stream, key=lambda r: r.recorded_at):
        run.wake_until(item.recorded_at, inclusive=False)
        run.event(item)
    if until is not None:
        run.wake_until(until, inclusive=True)
    return run


def _run_at_wakes(
    run: EpisodeRun, stream: Iterable[Recorded], wakes: list[dt.datetime], until: dt.datetime | None
) -> EpisodeRun:
    """Time moves only at `wakes`, the instants the workflow actually ran: a timer handled late,
    after an outage, is handled at the instant it ran, unless an event recorded before then
    raised what had fallen due first, as the workflow's handler does (`EpisodeRun.event`)."""
    pending = iter(wakes)
    wake = next(pending, None)
    for item in sorted(stream, key=lambda r: r.recorded_at):
        while wake is not None and wake < item.recorded_at:
            run.tick(wake)
            wake = next(pending, None)
        run.event(item)
    while wake is not None and (until is None or wake <= until):
        run.tick(wake)
        wake = next(pending, None)
    return run


def owed_alerts(
    reports: dict[str, EventBase], policy: Policy, until: dt.datetime
) -> dict[str, Alert]:
    """Every alert episodes owe by `until` when each received only its report (recorded when it
    happened): what a load test of open episodes must see delivered."""
    owed: dict[str, Alert] = {}
    for episode_id, report in reports.items():
        done = run_episode(episode_id, [Recorded.as_it_happened(report)], policy, until=until)
        owed.update((a.alert_id, a) for a in done.alerts)
    return owed
