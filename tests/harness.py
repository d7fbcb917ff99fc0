"""Drive an episode through the engine the way the API does (submit_event), with the clock of
whatever server the test uses (time-skipping or dev)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from mispers.domain.state import EpisodeState, Obligation
from mispers.engine.client import SubmitOutcome, get_episode_state, submit_event
from mispers.policy import PinnedPolicy
from tests.factories import event, merge


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

    async def skip(self, **delta: float) -> None:
        await self.env.sleep(dt.timedelta(**delta))
