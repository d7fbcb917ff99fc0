"""Drive an episode through the engine the way the API does (submit_event), with the clock of
whatever server the test uses (time-skipping or dev)."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from mispers.domain.state import EpisodeState, Obligation
from mispers.engine.client import SubmitOutcome, get_episode_state, submit_event
from mispers.policy import PinnedPolicy
from testkit.factories import event, merge


async def terminate_running(client: Client, workflow_ids: Iterable[str]) -> None:
    """Tests on the shared time-skipping server must leave no workflow whose worker is gone:
    its pending tasks would stop time skipping for every later test."""
    for workflow_id in set(workflow_ids):
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(workflow_id).terminate("test finished")


STARTED: list[str] = []


class EpisodeDriver:
    def __init__(
        self,
        env: WorkflowEnvironment,
        pinned: PinnedPolicy,
        task_queue: str,
        episode_id: str,
        child_ref: str = "C-1",
    ) -> None:
        self.env = env
        self.client: Client = env.client
        self.pinned = pinned
        self.task_queue = task_queue
        self.episode_id = episode_id
        self.child_ref = child_ref

    async def now(self) -> dt.datetime:
        return await self.env.get_current_time()

    async def send(
        self,
        kind: str,
        data: dict[str, Any] | None = None,
        *,
        at: dt.datetime | None = None,
        **kwargs: Any,
    ) -> SubmitOutcome:
        STARTED.extend([f"episode-{self.episode_id}", f"child-{self.child_ref}"])
        when = at or await self.now()
        stamp = when.isoformat()
        by_kind: dict[str, dict[str, Any]] = {
            "episode.reported": {"child": {"child_ref": self.child_ref}, "last_seen_at": stamp},
            "child.found": {"found_at": stamp},
            "sighting.reported": {"seen_at": stamp},
        }
        data = merge(by_kind.get(kind, {}), data or {})
        return await submit_event(
            self.client,
            event(kind, self.episode_id, when, data, **kwargs),
            self.pinned,
            self.task_queue,
        )

    async def state(self) -> EpisodeState:
        state = await get_episode_state(self.client, self.episode_id)
        assert state is not None
        return state

    async def obligation(self, oid: str) -> Obligation:
        state = await self.state()
        ob = state.obligation(oid)
        assert ob is not None, f"no obligation {oid}: {[o.id for o in state.obligations]}"
        return ob

    async def close(self) -> None:
        """Found and closed with every open obligation waived (episodes a test leaves behind)."""
        state = await self.state()
        if state.status.value == "missing":
            await self.send("child.found")
            state = await self.state()
        waivers = [{"obligation_id": o.id, "reason": "test drill"} for o in state.outstanding()]
        await self.send("closure.approved", {"waivers": waivers})

    async def skip(self, **delta: float) -> None:
        await self.env.sleep(dt.timedelta(**delta))
