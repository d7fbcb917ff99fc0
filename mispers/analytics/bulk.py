"""A synthetic period through the offline driver into the store, on every core: children are
dealt to worker processes whole (a child's episodes share its record), each process writes its
own batches, and the parent counts progress. Also the episodes' events for a stream file."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mispers.analytics.record import episode_record
from mispers.analytics.store import open_store
from mispers.domain.locations import LocationOfConcern
from mispers.offline.synth import children_plan, register_lookup, synthesize
from mispers.parallel import in_processes
from mispers.policy import load_policy

CHUNK_EPISODES = 2000


@dataclass(frozen=True)
class Job:
    """One worker's share: whole children, and where its records and events go."""

    children: list[Any]
    seed: int
    days: int
    start: dt.datetime
    policy_path: str | None
    register: dict[str, list[LocationOfConcern]]
    data_dir: str | None
    analytics: str | None
    keep_events: bool


@dataclass(frozen=True)
class Done:
    episodes: int
    events: int
    stream: list[dict[str, Any]]


def run_job(job: Job) -> Done:
    policy = load_policy(job.policy_path)
    end = job.start + dt.timedelta(days=job.days)
    records = []
    stream: list[dict[str, Any]] = []
    events = count = 0
    for ep in synthesize(
        0,
        job.days,
        job.seed,
        policy,
        job.start,
        lookup=register_lookup(job.register),
        concern_postcodes=sorted(job.register),
        children=job.children,
    ):
        count += 1
        events += len(ep.events)
        if job.keep_events:
            stream.extend(ep.events)
        if job.data_dir is not None:
            state = ep.state
            written = state.closed_at or end
            records.append(episode_record(state, "synth", written))
    if job.data_dir is not None:
        open_store(Path(job.data_dir), job.analytics).write(records)
    return Done(episodes=count, events=events, stream=stream)


def jobs(template: Job, episodes: int) -> list[Job]:
    """`template` (without children) dealt over the period's children, about
    CHUNK_EPISODES episodes a job."""
    plan = children_plan(episodes, template.days, random.Random(template.seed), template.start)
    out: list[Job] = []
    chunk: list[Any] = []
    size = 0
    for child in plan:
        chunk.append(child)
        size += len(child[1])
        if size >= CHUNK_EPISODES:
            out.append(dataclasses.replace(template, children=chunk))
            chunk, size = [], 0
    if chunk:
        out.append(dataclasses.replace(template, children=chunk))
    return out


def run_all(
    work: list[Job], processes: int | None, on_done: Callable[[Done], None]
) -> Iterator[Done]:
    """Each job's result as it finishes (in any order)."""
    return in_processes(run_job, work, processes, on_done)
