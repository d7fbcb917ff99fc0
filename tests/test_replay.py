"""Every recorded history (tests/histories, written by `python -m tests.record_histories`) must
replay on the current workflow code: a change that would break running episodes fails here
unless it is guarded by `workflow.patched`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from mispers.engine.client import data_converter
from workflows.child_record import ChildRecord
from workflows.episode import MissingChildEpisode

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
        workflows=[MissingChildEpisode, ChildRecord], data_converter=data_converter()
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


async def test_a_changed_workflow_is_caught(tmp_path: Path) -> None:
    """The check above could fail: the episode history does not replay on the child record."""
    episode = next(p for p in HISTORIES if p.stem.startswith("episode"))
    text = TEXTS[episode].replace('"MissingChildEpisode"', '"ChildRecord"')
    replayer = Replayer(workflows=[ChildRecord], data_converter=data_converter())
    result = await replayer.replay_workflow(
        WorkflowHistory.from_json("changed", text), raise_on_replay_failure=False
    )
    assert result.replay_failure is not None
