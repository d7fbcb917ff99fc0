"""The small fault drill (the full one is `python -m bench.chaos`): 50 episodes' full event
streams through the real API while the worker, the embedded server and the API are each
SIGKILLed once and restarted. Nothing lost, nothing recorded twice, no non-determinism, no
failed workflow task, no part dead without the drill killing it, every episode closed, every
alert raised delivered to the webhook, and the alerts the rules owe for what each episode
recorded (derived by the offline driver) raised exactly as the rules give them at the instants
the episode ran, each within the allowance for lateness (bench/README.md). One implementation
with the bench (bench/drill.py), a smaller size; and the drill itself fails when a part crashes
behind its back or a workflow task fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.drill import DrillConfig, run_drill

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


async def test_small_chaos_drill_loses_nothing(tmp_path: Path) -> None:
    config = DrillConfig(
        data_dir=tmp_path,
        episodes=50,
        concurrency=50,
        worker_kills=1,
        server_restarts=1,
        api_kills=1,
        outage=1.0,
        settle=60.0,
        progress=False,
    )
    report = await run_drill(config)
    print("\nchaos drill (small):\n" + "\n".join(report.lines()))

    assert [f.kind for f in report.faults] == ["worker", "server", "api"]
    assert report.lost == 0
    assert report.duplicated == 0
    assert report.unexpected == 0
    assert report.histories.nondeterminism == 0
    assert report.log_nondeterminism == 0
    assert report.recorded == report.tally.sent
    assert report.unread == 0
    assert not report.wrong_status, report.wrong_status
    assert report.alerts_due > 0, "the drill's time scale should make some deadlines fall due"
    assert report.raised_not_delivered == []
    # Exactly what the rules give at the instants the episodes ran, nothing they do not owe,
    # and every alert owed raised (or overtaken) within the allowance for lateness.
    assert report.alerts.unlike_derivation == []
    assert report.alerts.raised_not_owed == []
    assert report.alerts.too_late == []
    assert report.unplanned_exits == []
    assert not report.histories.task_failures, report.histories.failed_tasks
    assert report.failures == []


async def test_the_drill_fails_on_each_planted_fault(tmp_path: Path) -> None:
    """Both faults planted in one small run (one service start, not one per fault): the worker
    crashes behind the drill's back, and a workflow's every task fails. Each is seen by its own
    check, named among the failures and printed."""
    config = DrillConfig(
        data_dir=tmp_path,
        episodes=8,
        concurrency=8,
        worker_kills=0,
        server_restarts=0,
        api_kills=0,
        settle=60.0,
        progress=False,
        planted=("crash", "failing-task"),
    )
    report = await run_drill(config)
    lines = "\n".join(report.lines())
    print(f"\nchaos drill with planted faults:\n{lines}")
    for failure, printed in [
        ("died without being killed: worker", "unplanned exits: ['worker']"),
        ("failed workflow tasks", "failed workflow task: episode-PLANTED"),
    ]:
        assert any(failure in f for f in report.failures), report.failures
        assert printed in lines
    # the planted faults are the only things wrong: the episodes themselves came through
    assert report.lost == 0 and report.duplicated == 0 and not report.wrong_status
    assert report.raised_not_delivered == []
    assert report.alerts.unlike_derivation == [] and report.alerts.too_late == []
