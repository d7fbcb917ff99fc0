"""Each episode's stream through the offline driver under two policies, on every core.

Episodes of one child share the child's record (repeat counts), so a child's episodes go to one
process, in the order they were reported; children are independent of each other. A worker gets
the raw event bodies and parses them itself, so the parent only reads and deals."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from mispers.domain.locations import LocationOfConcern
from mispers.domain.types import ObligationKind, ObligationStatus, Rank
from mispers.offline.driver import STREAM_ACTOR, ChildRecords, EpisodeRun, Recorded, run_episode
from mispers.offline.synth import ADAPTER, register_lookup
from mispers.parallel import in_processes
from mispers.policy.model import Policy
from mispers.simulation.tally import Tally

# a child's episodes: (episode id, its event bodies in recorded order)
Group = list[tuple[str, list[dict[str, Any]]]]
CHUNK_EVENTS = 20_000
_RESOLVED = (ObligationStatus.MET, ObligationStatus.WAIVED, ObligationStatus.LAPSED)
# an enum's `.value` is a slow descriptor, read here for each of a year's millions of alerts
_VALUE: dict[StrEnum, str] = {m: m.value for e in (Rank, ObligationKind) for m in e}


class AlertSeen(NamedTuple):
    """A tuple: a year raises millions, each made in a worker and sent back to the parent."""

    alert_id: str
    rank: str
    kind: str
    escalation_level: int
    raised_at: dt.datetime


@dataclass
class Outcome:
    """What the rules did with one episode under one policy, as the comparison needs it. The
    alerts themselves stay in the worker, counted into its tally, unless the job keeps them."""

    alerts: list[AlertSeen] = field(default_factory=list)
    alert_count: int = -1  # the alerts raised, kept or not (-1: as many as `alerts` holds)
    # (kind, minutes past the deadline before it was met, waived or lapsed, or the horizon)
    overdue: list[tuple[str, float]] = field(default_factory=list)
    refused: list[tuple[str, str, str]] = field(default_factory=list)  # (event id, type, code)
    grades: list[str] = field(default_factory=list)
    floor: str | None = None
    status: str = ""

    def __post_init__(self) -> None:
        if self.alert_count < 0:
            self.alert_count = len(self.alerts)


@dataclass
class Compared:
    episode_id: str
    events: int
    reported_at: dt.datetime | None
    baseline: Outcome
    candidate: Outcome


@dataclass
class Done:
    """A job's episodes, and each policy's counts over them."""

    compared: list[Compared]
    baseline: Tally
    candidate: Tally


@dataclass(frozen=True)
class Job:
    groups: list[Group]
    baseline: Policy
    candidate: Policy | None
    until: dt.datetime
    register: dict[str, list[LocationOfConcern]]
    keep_alerts: bool = False  # each alert sent back, not only counted (faithfulness checks)


def outcome(
    run: EpisodeRun, horizon: dt.datetime, types: dict[str, str], tally: Tally, keep_alerts: bool
) -> Outcome:
    state = run.state
    tally.add_alerts((_VALUE[a.rank], a.raised_at) for a in run.alerts)
    out = Outcome(
        alerts=[
            AlertSeen(a.alert_id, _VALUE[a.rank], _VALUE[a.kind], a.escalation_level, a.raised_at)
            for a in run.alerts
        ]
        if keep_alerts
        else [],
        alert_count=len(run.alerts),
        refused=[(eid, types.get(eid, ""), code) for eid, code in run.refused],
        grades=[g.level.value for g in state.risk.history] if state.risk else [],
        floor=state.risk.floor.value if state.risk else None,
        status=state.status.value,
    )
    for ob in state.obligations:
        ended = ob.met_at if ob.status in _RESOLVED else None
        if ended is None:
            ended = state.closed_at or horizon
        if ob.due_at < ended:
            out.overdue.append((ob.kind.value, (ended - ob.due_at).total_seconds() / 60))
    tally.add_overdue(out.overdue)
    tally.add_refused(out.refused)
    return out


def parse(body: dict[str, Any]) -> Recorded:
    recorded = body.get("recorded_at")
    fields = {k: v for k, v in body.items() if k not in ("specversion", "recorded_at")}
    if fields.get("actor") is None:
        fields["actor"] = STREAM_ACTOR  # once here, rather than once under each policy
    event = ADAPTER.validate_python(fields)
    if recorded is None:
        return Recorded.as_it_happened(event)
    at = recorded if isinstance(recorded, dt.datetime) else dt.datetime.fromisoformat(recorded)
    return Recorded(event=event, recorded_at=at)


def _drive(
    episode_id: str,
    stream: list[Recorded],
    policy: Policy,
    until: dt.datetime,
    records: ChildRecords,
    lookup: Any,
) -> EpisodeRun:
    return run_episode(
        episode_id,
        stream,
        policy,
        until=until,
        records=records,
        lookup=lookup,
        alert_steps_in_timeline=False,  # the comparison reads the alerts themselves,
        alert_steps=False,  # ... what was raised, when and to whom, not their lifecycle record
    )


def run_job(job: Job) -> Done:
    lookup = register_lookup(job.register)
    records = (ChildRecords(), ChildRecords())
    out: list[Compared] = []
    tallies = (Tally(), Tally())
    for group in job.groups:
        for episode_id, bodies in group:
            stream = [parse(b) for b in bodies]
            types = {r.event.id: getattr(r.event, "type", "") for r in stream}
            base = _drive(episode_id, stream, job.baseline, job.until, records[0], lookup)
            cand = (
                _drive(episode_id, stream, job.candidate, job.until, records[1], lookup)
                if job.candidate is not None
                else base
            )
            out.append(
                Compared(
                    episode_id=episode_id,
                    events=len(stream),
                    reported_at=base.state.reported_at,
                    baseline=outcome(base, job.until, types, tallies[0], job.keep_alerts),
                    candidate=outcome(cand, job.until, types, tallies[1], job.keep_alerts),
                )
            )
    return Done(out, *tallies)


def group_by_child(streams: dict[str, list[dict[str, Any]]]) -> list[Group]:
    """Episodes dealt by child, each child's in the order they were reported."""
    children: dict[str, list[tuple[str, str, list[dict[str, Any]]]]] = {}
    for episode_id, bodies in streams.items():
        bodies.sort(key=lambda b: str(b.get("recorded_at") or b["time"]))
        ref = episode_id
        first = str(bodies[0].get("recorded_at") or bodies[0]["time"]) if bodies else ""
        for b in bodies:
            if b.get("type") == "mispers.episode.reported":
                child = (b.get("data") or {}).get("child") or {}
                ref = "child:" + str(child.get("child_ref", episode_id))
                first = str(b.get("recorded_at") or b["time"])
                break
        children.setdefault(ref, []).append((first, episode_id, bodies))
    return [[(eid, bodies) for _, eid, bodies in sorted(eps)] for eps in children.values()]


def jobs(
    groups: list[Group],
    baseline: Policy,
    candidate: Policy | None,
    until: dt.datetime,
    register: dict[str, list[LocationOfConcern]],
    chunk_events: int = CHUNK_EVENTS,
    keep_alerts: bool = False,
) -> list[Job]:
    out: list[Job] = []
    chunk: list[Group] = []
    size = 0
    for group in groups:
        chunk.append(group)
        size += sum(len(b) for _, b in group)
        if size >= chunk_events:
            out.append(Job(chunk, baseline, candidate, until, register, keep_alerts))
            chunk, size = [], 0
    if chunk:
        out.append(Job(chunk, baseline, candidate, until, register, keep_alerts))
    return out


def run_all(
    work: list[Job], processes: int | None, on_done: Callable[[Done], None]
) -> Iterator[Done]:
    """Each job's result as it finishes (in any order)."""
    return in_processes(run_job, work, processes, on_done)


def run_and_merge(work: list[Job], processes: int | None, advance: Callable[[int], None]) -> Done:
    """Every job on every core, merged: all episodes, and each policy's counts summed;
    `advance` is told how many episodes each finished job ran."""
    merged = Done([], Tally(), Tally())
    for done in run_all(work, processes, lambda d: advance(len(d.compared))):
        merged.compared.extend(done.compared)
        merged.baseline.merge(done.baseline)
        merged.candidate.merge(done.candidate)
    return merged
