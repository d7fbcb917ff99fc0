"""The fault drill's allowance for lateness (bench/drill.py): a timer runs within `LAG` of
falling due, or within `LAG` of the end of the stall it fell due in."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import cast

from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory

from bench.drill import (
    LAG,
    QUEUE_WAIT,
    WORKFLOW_TASK_TIMEOUT,
    loop_wakes,
    run_by,
    stall_spans,
    task_stalls,
)

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
S = dt.timedelta(seconds=1)


def test_outside_any_stall_a_timer_is_allowed_lag() -> None:
    spans = stall_spans([(T0, T0 + 2 * S)], [])
    assert run_by(T0 - 60 * S, spans) == T0 - 60 * S + LAG
    assert run_by(T0 + 60 * S, spans) == T0 + 60 * S + LAG


def test_a_timer_due_in_an_outage_may_run_until_a_held_task_is_handed_on() -> None:
    """Down at T0, back 2 s later: a task the dead worker held is handed on at the workflow
    task timeout; a timer due just before the kill (its task held) counts too."""
    spans = stall_spans([(T0, T0 + 2 * S)], [])
    end = T0 + 2 * S + WORKFLOW_TASK_TIMEOUT + LAG
    assert run_by(T0 + S, spans) == end
    assert run_by(T0 - LAG, spans) == end


def test_overlapping_stalls_merge_and_a_timed_out_task_is_a_stall() -> None:
    """A workflow task that timed out (a worker too busy to answer) stalls its episode until the
    timeout; when a fault follows before it ends, the two are one stall."""
    timed_out = [(T0 - 12 * S, T0 - 2 * S)]
    spans = stall_spans([(T0 - 3 * S, T0)], timed_out)
    assert spans == [(T0 - 12 * S - LAG, T0 + WORKFLOW_TASK_TIMEOUT)]
    assert run_by(T0 - 11 * S, spans) == T0 + WORKFLOW_TASK_TIMEOUT + LAG


async def test_where_alerts_are_addressed_first_the_addressing_wakes_the_loop() -> None:
    """In a run that addresses alerts before delivering them, the loop wakes when who was
    paged is recorded (the addressing's answer), not when a delivery round answers: the drill
    steps the rules at the instants the workflow did, or it derives alerts at instants the
    workflow never ran."""
    path = Path(__file__).parent.parent / "histories" / "episode-alert-timeline-2026-11-30.json"
    history = WorkflowHistory.from_json("episode", path.read_text())
    answered = local_activity_answers(history)
    wakes = set(await loop_wakes(cast(Client, None), history))
    assert answered["address_alerts"] and answered["address_alerts"] <= wakes
    assert not answered["deliver_alerts_once"] & wakes


def local_activity_answers(history: WorkflowHistory) -> dict[str, set[dt.datetime]]:
    """The instants each kind of local activity answered, from its markers."""
    answered: dict[str, set[dt.datetime]] = {}
    for ev in history.events:
        attrs = ev.marker_recorded_event_attributes
        if ev.event_type == EventType.EVENT_TYPE_MARKER_RECORDED and "data" in attrs.details:
            data = json.loads(attrs.details["data"].payloads[0].data)
            done = data["complete_time"]
            at = dt.datetime.fromtimestamp(
                int(done["seconds"]) + int(done.get("nanos", 0)) / 1e9, dt.UTC
            )
            answered.setdefault(data["activity_type"], set()).add(at)
    return answered


def history_of(*events: tuple[float, EventType.ValueType]) -> WorkflowHistory:
    """A run's workflow-task events at the given seconds after T0."""
    built = []
    for n, (seconds, kind) in enumerate(events, start=1):
        at = Timestamp()
        at.FromDatetime(T0 + seconds * S)
        built.append(HistoryEvent(event_id=n, event_time=at, event_type=kind))
    return WorkflowHistory("episode", built)


def test_a_task_no_worker_took_stalls_from_its_scheduling_and_a_long_wait_is_a_stall() -> None:
    """As a drill saw after a worker kill on a busy machine: a task scheduled on the killed
    worker timed out unstarted after 10 s, and its next attempt waited 10.8 s for the restarted
    worker, which was replaying every episode it picked up. A timer due in either stall ran when
    the task was taken, not late by the rules."""
    history = history_of(
        (0.0, EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED),
        (0.4, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED),
        (0.9, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
        (2.0, EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED),
        (12.0, EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT),
        (12.0, EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED),
        (22.8, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED),
        (23.0, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
    )
    stalls, waits = task_stalls(history)
    assert stalls == [(T0 + 2 * S, T0 + 12 * S), (T0 + 12 * S, T0 + 22.8 * S)]
    assert waits == [10.8]
    spans = stall_spans([], stalls)
    assert run_by(T0 + 10 * S, spans) == T0 + 22.8 * S + LAG


def test_a_task_taken_within_the_queue_wait_is_no_stall() -> None:
    taken = QUEUE_WAIT.total_seconds()
    history = history_of(
        (0.0, EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED),
        (taken, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED),
        (taken + 0.1, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
    )
    assert task_stalls(history) == ([], [])


async def test_where_the_round_addresses_no_alert_activity_wakes_the_loop() -> None:
    """In a run whose delivery round addresses its batch (and writes the memo itself), neither
    the round's answer nor, after a crashed round, the addressing's steps the rules: the wakes
    read from the history are the tasks' own, or the drill would derive alerts at instants the
    workflow never stepped."""
    for name in ("episode-alert-timeline-2026-12-01-2", "episode-alert-round-crashed-2026-12-01-2"):
        path = Path(__file__).parent.parent / "histories" / f"{name}.json"
        history = WorkflowHistory.from_json("episode", path.read_text())
        answered = local_activity_answers(history)
        assert answered["deliver_alerts_once"], name
        wakes = set(await loop_wakes(cast(Client, None), history))
        assert not (answered["deliver_alerts_once"] | answered.get("address_alerts", set())) & wakes
        assert answered["check_location"] <= wakes  # an I/O answer still wakes it
