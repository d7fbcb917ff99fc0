"""The packed state a detail read decodes: the same state back, much smaller than its JSON,
and nothing kept (so the readers ask the workflow) once it exceeds the budget."""

from __future__ import annotations

import datetime as dt

import pytest

from mispers.domain import state_memo
from mispers.domain.state import EpisodeState, TimelineEntry

AT = dt.datetime(2026, 11, 30, 6, 0, tzinfo=dt.UTC)


def long_episode(entries: int) -> EpisodeState:
    state = EpisodeState(episode_id="E-1", reported=True, flags=["cse"], event_keys=["a|1"])
    state.timeline = [
        TimelineEntry(
            event_id=f"e-{n}",
            type="mispers.sighting.reported",
            time=AT + dt.timedelta(minutes=n),
            source="force/cad",
            actor="PC-1",
            recorded_at=AT + dt.timedelta(minutes=n, seconds=5),
            data={"seen_at": (AT + dt.timedelta(minutes=n)).isoformat(), "note": "by the canal"},
        )
        for n in range(entries)
    ]
    return state


def test_unpack_gives_back_the_state_the_query_answers() -> None:
    state = long_episode(30)
    packed = state_memo.pack(state_memo.state_json(state))
    assert packed is not None
    back = state_memo.unpack(packed)
    assert back == state
    assert back.model_dump_json() == state.model_dump_json()


def test_packing_keeps_a_long_episode_small() -> None:
    raw = state_memo.state_json(long_episode(200))
    packed = state_memo.pack(raw)
    assert packed is not None and len(packed) * 5 < len(raw)


def test_a_state_over_the_budget_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = state_memo.state_json(long_episode(5))
    assert state_memo.pack(raw) is not None
    monkeypatch.setattr(state_memo, "MEMO_BUDGET_BYTES", 100)
    assert state_memo.pack(raw) is None
