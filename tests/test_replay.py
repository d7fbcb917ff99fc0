"""Every recorded history (tests/histories, written by `python -m tests.record_histories`) must
replay on the current workflow code: a change that would break running episodes fails here
unless it is guarded by `workflow.patched`."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from mispers.domain.types import RiskLevel
from mispers.engine.client import data_converter
from mispers.policy.model import PerLevel
from worker import workflow_runner
from workflows.child_record import ChildRecord
from workflows.episode import BASELINES, MissingChildEpisode

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
TEXTS = {path: path.read_text() for path in HISTORIES}


def test_there_is_a_recorded_history_of_each_workflow() -> None:
    recorded = {
        json.loads(TEXTS[p])["events"][0]["workflowExecutionStartedEventAttributes"][
            "workflowType"
        ]["name"]
        for p in HISTORIES
    }
    assert {"MissingChildEpisode", "ChildRecord"} <= recorded


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays_without_nondeterminism(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, TEXTS[path])
    replayer = Replayer(
        workflows=[MissingChildEpisode, ChildRecord],
        data_converter=data_converter(),
        workflow_runner=workflow_runner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


async def test_a_changed_rule_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above could fail, for the reason it exists: a rule changed without a patch.
    Here every deadline and escalation interval the policy gives comes an hour later; the
    episode's timers and alerts then differ from what it recorded, and replay says so."""
    original = PerLevel.for_level

    def an_hour_later(self: PerLevel, level: RiskLevel) -> timedelta:
        return original(self, level) + timedelta(hours=1)

    episode = next(p for p in HISTORIES if p.stem.startswith("episode"))
    history = WorkflowHistory.from_json("changed", TEXTS[episode])
    replayer = Replayer(
        workflows=[MissingChildEpisode],
        data_converter=data_converter(),
        workflow_runner=workflow_runner(),
    )
    assert (
        await replayer.replay_workflow(history, raise_on_replay_failure=False)
    ).replay_failure is None
    monkeypatch.setattr(PerLevel, "for_level", an_hour_later)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
    assert "nondetermin" in str(result.replay_failure).lower(), result.replay_failure


def test_every_recorded_path_has_a_history() -> None:
    """One history per scenario of the recorder: a new path through the workflows is recorded
    (a scenario added there) when it is released, and the corpus keeps it."""
    from tests.record_histories import SCENARIOS

    stems = [p.stem for p in HISTORIES]
    for name in SCENARIOS:
        prefix = "episode-20" if name == "full" else f"episode-{name}-20"
        assert any(stem.startswith(prefix) for stem in stems), f"no history of {name!r}"
    assert len(HISTORIES) >= 8


def test_the_corpus_holds_runs_of_every_baseline_and_of_none() -> None:
    """A new baseline must not strand the runs recorded under an older one, or under none:
    each kind has a recorded episode history above, replayed on the current code."""
    kinds = set()
    for path in HISTORIES:
        events = json.loads(TEXTS[path])["events"]
        if events[0]["workflowExecutionStartedEventAttributes"]["workflowType"]["name"] != (
            "MissingChildEpisode"
        ):
            continue
        patches = {
            json.loads(base64.b64decode(details["patch-data"]["payloads"][0]["data"]))["id"]
            for ev in events
            if "patch-data"
            in (details := ev.get("markerRecordedEventAttributes", {}).get("details", {}))
        }
        kinds.add(next((marker for marker, _ in BASELINES if marker in patches), None))
    assert kinds == {marker for marker, _ in BASELINES} | {None}
