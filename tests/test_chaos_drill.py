"""The small fault drill (the full one is `python -m bench.chaos`): 50 episodes' full
event streams through the real API while the worker, the embedded server and the API are each
SIGKILLed once and restarted. Nothing lost, nothing recorded twice, no non-determinism, every
episode closed and every alert that fell due delivered to the webhook. One implementation with
the bench (bench/drill.py), a smaller size."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.drill import DrillConfig, run_drill

pytestmark = [pytest.mark.integration, pytest.mark.timeout(170)]


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
    assert report.alerts_delivered == report.alerts_due
    assert report.failures == []
