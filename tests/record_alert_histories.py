"""Record the alert lifecycle's history for `tests/test_replay.py`:
`python -m tests.record_alert_histories`.

Every path the lifecycle leaves in history: an alert addressed from the rota and paged with a
signed link, acknowledged (escalation paused: the timer moves), the acknowledgement lapsing
(re-triggered, re-paged, the next rank alerted), a constable's acknowledgement that pauses
nothing, a repeated acknowledgement answered as a duplicate, a resolved alert refusing one, the
memo and search attribute kept current, and resolution when the obligation is met or waived;
each step an alert takes by itself kept in the timeline, and every triggered batch addressed
(rota, link) by its delivery round, one local activity, or, after a round that crashed, by a
local activity of its own.
Written as `episode-alert-timeline-<date>.json` (the first recording, before the timeline kept
alert steps, is `episode-alert-lifecycle-2026-11-30.json`), never over an earlier file.

A second history, `episode-alert-round-crashed-<date>.json`: the same episode while the local
delivery round crashes every time and the durable delivery's first attempts fail, so every batch
falls back to the durable delivery with the addresses the episode recorded."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

from temporalio import activity
from temporalio.testing import WorkflowEnvironment

from activities.alerts import AlertActivities, pager_from_settings, sinks_from_settings
from mispers.config import Settings
from mispers.domain.messages import AlertDelivery, DeliverAlertsInput, DeliverAlertsOnceInput
from mispers.domain.types import Role
from mispers.engine.client import EventRejected, data_converter
from mispers.engine.embedded import venv_binary
from mispers.policy import PinnedPolicy, load_policy
from testkit.receivers import webhook_receiver
from tests.conftest import STARTUP, register_search_attributes
from tests.harness import EpisodeDriver
from tests.record_histories import save
from tests.test_alert_lifecycle_timeskipping import ROTA, ack
from worker import build_worker


async def lifecycle_episode(d: EpisodeDriver) -> None:
    await d.send("episode.reported")
    await d.skip(hours=1, minutes=5)  # systems checks missed: the sergeant is paged
    l1, l2 = (f"{d.episode_id}:systems_checks:L{n}" for n in (1, 2))
    await ack(d, l1, "SGT-1")
    await ack(d, l1, "SGT-1")  # a duplicate
    await d.skip(hours=2, minutes=5)  # the acknowledgement lapses: re-paged, inspector alerted
    await ack(d, l2, "PC-12", Role.OFFICER)  # recorded, pauses nothing
    await d.send("enquiry.recorded")  # met: both alerts resolved
    with contextlib.suppress(EventRejected):  # resolved: refused, leaving no mark
        await ack(d, l1, "SGT-1")
    await d.send("social_services.contacted")
    await d.skip(hours=3)
    await d.send("child.found")
    state = await d.state()
    waivers = [{"obligation_id": o.id, "reason": "recorded drill"} for o in state.outstanding()]
    await d.send("closure.approved", {"waivers": waivers})


class CrashingDelivery(AlertActivities):
    """The local round crashes every time; the durable delivery fails its first attempt."""

    @activity.defn(name="deliver_alerts_once")
    async def deliver_alerts_once(self, input: DeliverAlertsOnceInput) -> AlertDelivery:
        raise RuntimeError("the delivery round crashed")

    @activity.defn(name="deliver_alerts")
    async def deliver_alerts(self, input: DeliverAlertsInput) -> list[str]:
        if activity.info().attempt == 1:
            raise RuntimeError("the delivery crashed")
        return await super().deliver_alerts(input)


async def record(work: Path, crashing: bool = False) -> Path:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(venv_binary("temporal-test-server")),
        test_server_startup_timeout=STARTUP,
        data_converter=data_converter(),
    )
    rota = work / "rota.csv"
    rota.write_text(ROTA)
    pinned = PinnedPolicy.pin(load_policy())
    async with env:
        await register_search_attributes(env.client)
        with webhook_receiver() as hook:
            settings = Settings(data_dir=work, alert_webhook_url=hook.url, rota=rota)
            queue = f"record-{uuid.uuid4().hex[:6]}"
            activities = (
                CrashingDelivery(sinks_from_settings(settings), pager_from_settings(settings))
                if crashing
                else None
            )
            async with build_worker(
                env.client, settings, task_queue=queue, alert_activities=activities
            ):
                child = f"CH-{uuid.uuid4().hex[:6]}"
                d = EpisodeDriver(env, pinned, queue, f"R-{uuid.uuid4().hex[:8]}", child)
                await lifecycle_episode(d)
                stem = "episode-alert-round-crashed" if crashing else "episode-alert-timeline"
                path = await save(env.client, f"episode-{d.episode_id}", stem)
                await env.client.get_workflow_handle(f"child-{child}").terminate("recorded")
    return path


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        for crashing in (False, True):
            print(f"recorded {asyncio.run(record(Path(work), crashing)).name}")


if __name__ == "__main__":
    main()
