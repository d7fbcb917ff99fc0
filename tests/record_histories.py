"""Record the histories that `tests/test_replay.py` replays: `python -m tests.record_histories
[scenario ...]` (all scenarios when none is named).

Run it when a workflow change is released (after guarding the change with `workflow.patched`):
the new files join the old ones, and every history ever recorded must keep replaying. A history
is written under its scenario's name and the date, and a name already taken gets a number: a
released history is never overwritten.

One scenario per distinct path of the workflows: `full` touches every path that leaves a mark
in history (update with start, the child-record sync and location-check activities, timers
firing escalations through every rank, alert delivery with a local round and once the
server-side retry, reassessment, disclosure, closure refused then approved with waivers);
the others each follow one path alone: a neglected episode escalating to the top rank, a
repeat child crossing each threshold, closure refused then approved with waivers, a location
of concern, a location of concern checked while the child's record cannot be reached (the
look-up and the sync in lanes of their own), a disclosure leading to a crime obligation, an
episode that continues as new, and an event that arrives between a deadline and its late
timer."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Worker

from mispers.config import Settings
from mispers.domain.messages import (
    EPISODE_WORKFLOW,
    EpisodeInput,
    child_workflow_id,
    episode_workflow_id,
)
from mispers.engine.client import EventRejected
from mispers.policy import PinnedPolicy, load_policy
from testkit.receivers import webhook_receiver
from tests.conftest import eventually, register_search_attributes, start_time_skipping_server
from tests.harness import (
    STARTED,
    EpisodeDriver,
    send_after_late_timer,
    slow_update_worker_options,
    terminate_running,
)
from worker import build_worker
from workflows.child_record import ChildRecord, ChildRecordInput

HISTORIES = Path(__file__).parent / "histories"
REGISTER = "postcode,category,reference\nN1 9GU,registered_sex_offender,RSO-7\n"


async def full_episode(d: EpisodeDriver) -> None:
    now = await d.now()
    dob = now.date().replace(year=now.year - 15).isoformat()
    await d.send("episode.reported", {"child": {"date_of_birth": dob}})
    await d.send("enquiry.recorded")
    await d.send("social_services.contacted")
    await d.skip(hours=8, minutes=30)  # the sergeant's review is missed: escalation to the top
    await d.send("alert.acknowledged", {"alert_id": f"{d.episode_id}:supervisor_review:L1"})
    await d.send("risk.assessed", {"level": "medium", "rank": "inspector", "assessed_by": "I-9"})
    await d.send(
        "sighting.reported",
        {"location": {"description": "a flat", "postcode": "N1 9GU"}, "with_persons": ["P-1"]},
    )
    await d.send("linked_person.identified", {"person_ref": "P-1"})
    await d.skip(hours=20)
    await d.send("child.found")
    await d.send(
        "safe_and_well.completed",
        {"disclosures": [{"kind": "sexual_activity", "summary": "with an adult"}]},
    )
    await d.send("social_services.contacted", {"purpose": "return_notification"})
    await d.skip(hours=30)
    await d.send("crime.recorded")
    await d.send("return_interview.completed")
    await d.send("linked_person.resolved", {"person_ref": "P-1"})
    try:
        await d.send("closure.requested")
        await d.send("closure.approved")
    except EventRejected:
        pass  # refused while obligations are open: the refusal is part of the history
    state = await d.state()
    waivers = [{"obligation_id": o.id, "reason": "recorded drill"} for o in state.outstanding()]
    await d.send("closure.approved", {"waivers": waivers})
    assert (await d.state()).status.value == "closed"


async def neglected(d: EpisodeDriver) -> None:
    """Reported, then nothing done: every deadline escalates up to the top rank."""
    await d.send("episode.reported")
    await d.skip(hours=12)
    state = await d.state()
    assert any(a.rank.value == "superintendent" for a in state.alerts)
    await d.close()


async def repeat_child(d: EpisodeDriver) -> None:
    """A child's second and third episodes: each repeat threshold of the policy is crossed."""
    for _ in range(2):
        await d.send("episode.reported")
        await eventually(d.state, lambda s: s.repeat.known)
        await d.close()
        await d.skip(days=10)
        d.episode_id = f"R-{uuid.uuid4().hex[:8]}"
    await d.send("episode.reported")
    state = await eventually(d.state, lambda s: s.repeat.known)
    assert state.repeat.episodes_30d >= 2 and state.repeat.episodes_90d >= 3
    await d.close()


async def closure_refused(d: EpisodeDriver) -> None:
    """Closure asked for while an obligation is open: refused, then approved with waivers."""
    await d.send("episode.reported")
    await d.send("linked_person.identified", {"person_ref": "SUS-1", "relation": "suspect"})
    await d.send("child.found")
    state = await d.state()
    waivers = [
        {"obligation_id": o.id, "reason": "recorded drill"}
        for o in state.outstanding()
        if o.kind.value != "linked_person_resolution"
    ]
    try:
        await d.send("closure.approved", {"waivers": waivers})
        raise AssertionError("closure with an untraced suspect was accepted")
    except EventRejected:
        pass
    await d.send("linked_person.resolved", {"person_ref": "SUS-1", "outcome": "traced_actioned"})
    await d.send("closure.approved", {"waivers": waivers})


async def location_of_concern(d: EpisodeDriver) -> None:
    """Found at a postcode on the register: flags, a linked person to resolve, high risk."""
    await d.send("episode.reported")
    await d.send("child.found", {"location": {"postcode": "N1 9GU", "description": "a flat"}})
    await eventually(d.state, lambda s: "location_of_concern" in s.flags)
    await d.close()


async def location_while_record_stalled(d: EpisodeDriver) -> None:
    """The child's record cannot be reached (its queue has no worker) while a sighting is at a
    postcode on the register: the look-up answers beside the sync in flight; then the record's
    worker comes back, the sync completes and the episode closes."""
    record_queue = f"{d.task_queue}-record"
    await d.client.start_workflow(
        ChildRecord.run,
        ChildRecordInput(child_ref=d.child_ref),
        id=child_workflow_id(d.child_ref),
        task_queue=record_queue,
    )
    await d.send("episode.reported")
    await d.send("sighting.reported", {"location": {"postcode": "N1 9GU", "description": "a flat"}})
    state = await eventually(d.state, lambda s: "location_of_concern" in s.flags)
    assert not state.repeat.known, "the record answered before the look-up"
    async with Worker(d.client, task_queue=record_queue, workflows=[ChildRecord]):
        await eventually(d.state, lambda s: s.repeat.known, within=60)
        await d.close()
        # the record's last sync must be answered while its worker is still here
        await terminate_running(d.env, STARTED)


async def disclosure(d: EpisodeDriver) -> None:
    """A 15-year-old's disclosure: a crime to record, overdue and escalated, then recorded."""
    now = await d.now()
    dob = now.date().replace(year=now.year - 15).isoformat()
    await d.send("episode.reported", {"child": {"date_of_birth": dob}})
    await d.send("child.found")
    await d.send(
        "safe_and_well.completed",
        {"disclosures": [{"kind": "sexual_activity", "summary": "with an adult"}]},
    )
    await d.skip(hours=25)
    await d.send("crime.recorded")
    await d.close()


async def continued_as_new(d: EpisodeDriver) -> None:
    """An episode whose history reaches its limit: the first run ends in continue-as-new."""
    await d.client.start_workflow(
        EPISODE_WORKFLOW,
        EpisodeInput(episode_id=d.episode_id, policy=d.pinned, continue_as_new_at_history=60),
        id=episode_workflow_id(d.episode_id),
        task_queue=d.task_queue,
    )
    await d.send("episode.reported")
    await d.skip(hours=12)
    await d.close()


async def late_timer(d: EpisodeDriver) -> None:
    """An event between a deadline and its late timer: the deadline is raised first."""
    await send_after_late_timer(d)
    await d.close()


# name -> (scenario, the workflows it records: "episode", "first_run", "child_record")
SCENARIOS: dict[str, tuple[Callable[[EpisodeDriver], Awaitable[None]], tuple[str, ...]]] = {
    "full": (full_episode, ("episode", "child_record")),
    "neglected": (neglected, ("episode",)),
    "repeat": (repeat_child, ("episode", "child_record")),
    "closure-refused": (closure_refused, ("episode",)),
    "location-of-concern": (location_of_concern, ("episode",)),
    "location-while-record-stalled": (location_while_record_stalled, ("episode",)),
    "disclosure": (disclosure, ("episode",)),
    "continued-as-new": (continued_as_new, ("first_run",)),
    "late-timer": (late_timer, ("episode",)),
}
# Scenarios whose worker is slow with Update tasks (`tests.harness.UPDATE_HOLD`).
SLOW_UPDATES = {"late-timer"}


async def save(client: Client, workflow_id: str, name: str, run_id: str | None = None) -> Path:
    history: WorkflowHistory = await client.get_workflow_handle(
        workflow_id, run_id=run_id
    ).fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    stem = f"{name}-{dt.date.today().isoformat()}"
    path = HISTORIES / f"{stem}.json"
    n = 1
    while path.exists():  # a second release on one day
        n += 1
        path = HISTORIES / f"{stem}-{n}.json"
    path.write_text(history.to_json())
    return path


async def first_run_id(client: Client, workflow_id: str) -> str:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return history.events[0].workflow_execution_started_event_attributes.first_execution_run_id


async def record(work: Path, names: list[str]) -> list[Path]:
    paths: list[Path] = []
    for name in names:
        paths += await record_one(work, name)
    return paths


async def record_one(work: Path, name: str) -> list[Path]:
    """One scenario on a time-skipping server of its own: a run that ends (completes, or
    continues as new) while an activity or task of it is in flight can leave that server's
    clock held, which would stall the next scenario's timers."""
    env = await start_time_skipping_server()
    register = work / "locations.csv"
    register.write_text(REGISTER)
    pinned = PinnedPolicy.pin(load_policy())
    paths: list[Path] = []
    scenario, kinds = SCENARIOS[name]
    async with env:
        await register_search_attributes(env.client)
        with webhook_receiver() as hook:
            # the full scenario's first alert fails its local round: the durable retry
            hook.fail_next = 1 if name == "full" else 0
            settings = Settings(
                data_dir=work, alert_webhook_url=hook.url, locations_of_concern=register
            )
            queue = f"record-{uuid.uuid4().hex[:6]}"
            options = slow_update_worker_options() if name in SLOW_UPDATES else {}
            async with build_worker(env.client, settings, task_queue=queue, **options):
                child = f"CH-{uuid.uuid4().hex[:6]}"
                d = EpisodeDriver(env, pinned, queue, f"R-{uuid.uuid4().hex[:8]}", child)
                await scenario(d)
                episode = episode_workflow_id(d.episode_id)
                stem = "episode" if name == "full" else f"episode-{name}"
                if "episode" in kinds:
                    paths.append(await save(env.client, episode, stem))
                if "first_run" in kinds:
                    run = await first_run_id(env.client, episode)
                    first = await env.client.get_workflow_handle(
                        episode, run_id=run
                    ).fetch_history()
                    last = first.events[-1].event_type
                    assert last == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
                    paths.append(await save(env.client, episode, stem, run))
                if "child_record" in kinds:
                    record_stem = "child_record" if name == "full" else f"child_record-{name}"
                    paths.append(await save(env.client, child_workflow_id(child), record_stem))
                await terminate_running(env, STARTED)
    return paths


def main() -> None:
    import sys
    import tempfile

    names = sys.argv[1:] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"no such scenario: {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    with tempfile.TemporaryDirectory() as work:
        for path in asyncio.run(record(Path(work), names)):
            print(f"recorded {path.name}")


if __name__ == "__main__":
    main()
