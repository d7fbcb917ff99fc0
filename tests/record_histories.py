"""Record the histories that `tests/test_replay.py` replays: `python -m tests.record_histories`.

Run it when a workflow change is released (after guarding the change with `workflow.patched`):
the new files join the old ones, and every history ever recorded must keep replaying. A history
is written under the workflow type and the date, so recording never overwrites a released one.

The scenario touches every path of the episode workflow that leaves a mark in history: update
with start, the child-record sync and location-check activities, timers firing escalations
through every rank, alert delivery (a local round, and once the server-side retry after a
failed round), reassessment, disclosure leading to a crime obligation,
closure refused then approved with waivers; and a child record that continues as new."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from mispers.config import Settings
from mispers.engine.client import EventRejected, data_converter
from mispers.engine.embedded import venv_binary
from mispers.policy import PinnedPolicy, load_policy
from testkit.receivers import webhook_receiver
from tests.conftest import STARTUP, register_search_attributes
from tests.harness import EpisodeDriver
from worker import build_worker

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


async def save(client: Client, workflow_id: str, name: str) -> Path:
    history: WorkflowHistory = await client.get_workflow_handle(workflow_id).fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    stem = f"{name}-{dt.date.today().isoformat()}"
    path = HISTORIES / f"{stem}.json"
    n = 1
    while path.exists():  # a second release on one day
        n += 1
        path = HISTORIES / f"{stem}-{n}.json"
    path.write_text(history.to_json())
    return path


async def record(work: Path) -> list[Path]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(venv_binary("temporal-test-server")),
        test_server_startup_timeout=STARTUP,
        data_converter=data_converter(),
    )
    register = work / "locations.csv"
    register.write_text(REGISTER)
    pinned = PinnedPolicy.pin(load_policy())
    async with env:
        await register_search_attributes(env.client)
        with webhook_receiver() as hook:
            hook.fail_next = 1  # the first alert's local round fails: the durable retry is recorded
            settings = Settings(
                data_dir=work, alert_webhook_url=hook.url, locations_of_concern=register
            )
            queue = f"record-{uuid.uuid4().hex[:6]}"
            async with build_worker(env.client, settings, task_queue=queue):
                child = f"CH-{uuid.uuid4().hex[:6]}"
                d = EpisodeDriver(env, pinned, queue, f"R-{uuid.uuid4().hex[:8]}", child)
                await full_episode(d)
                episode = await save(env.client, f"episode-{d.episode_id}", "episode")
                child_record = await save(env.client, f"child-{child}", "child_record")
                await env.client.get_workflow_handle(f"child-{child}").terminate("recorded")
    return [episode, child_record]


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        for path in asyncio.run(record(Path(work))):
            print(f"recorded {path.name}")


if __name__ == "__main__":
    main()
