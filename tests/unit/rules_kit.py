"""Drive the pure rules directly (no Temporal): a tiny clock and an event sender."""

from __future__ import annotations

import datetime as dt
from typing import Any

from mispers.domain import episode as rules
from mispers.domain.episode import Effects
from mispers.domain.state import EpisodeState, Obligation
from mispers.policy import Policy, load_policy
from testkit.factories import event, merge

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
POLICY = load_policy()


class Episode:
    def __init__(self, policy: Policy = POLICY, episode_id: str = "E-1") -> None:
        self.policy = policy
        self.now = T0
        self.state: EpisodeState = rules.new_state(episode_id, "test")
        self.effects: list[Effects] = []
        self.alerts: list[Any] = []

    def send(self, kind: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Effects:
        stamp = self.now.isoformat()
        by_kind: dict[str, dict[str, Any]] = {
            "episode.reported": {"last_seen_at": stamp},
            "child.found": {"found_at": stamp},
            "sighting.reported": {"seen_at": stamp},
        }
        when = kwargs.pop("at", self.now)
        data = merge(by_kind.get(kind, {}), data or {})
        ev = event(kind, self.state.episode_id, when, data, **kwargs)
        rules.check_event(self.state, ev, self.policy, self.now)
        effects = rules.apply_event(self.state, ev, self.policy, self.now)
        self.effects.append(effects)
        return effects

    def check(self, kind: str, data: dict[str, Any] | None = None, **kwargs: Any) -> None:
        ev = event(kind, self.state.episode_id, self.now, data, **kwargs)
        rules.check_event(self.state, ev, self.policy, self.now)

    def advance(self, **delta: float) -> list[Any]:
        self.now += dt.timedelta(**delta)
        raised = rules.advance(self.state, self.policy, self.now)
        self.alerts += raised
        return raised

    def ob(self, oid: str) -> Obligation:
        found = self.state.obligation(oid)
        assert found is not None, f"no {oid} in {[o.id for o in self.state.obligations]}"
        return found

    def ids(self) -> set[str]:
        return {o.id for o in self.state.obligations}

    def open_ids(self) -> set[str]:
        return {o.id for o in self.state.outstanding()}
