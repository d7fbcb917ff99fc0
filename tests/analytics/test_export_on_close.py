"""The close-time export: an episode that closes on a real worker writes its record to the
store in the data directory, once, with what the episode's state holds."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from mispers.analytics.store import open_store
from mispers.config import Settings, load_settings
from mispers.policy import PinnedPolicy
from tests.conftest import eventually
from tests.harness import STARTED, EpisodeDriver, terminate_running
from worker import build_worker

pytestmark = pytest.mark.integration


async def test_a_closing_episode_writes_its_record_once(
    ts_env: WorkflowEnvironment, pinned: PinnedPolicy, tmp_path: Path
) -> None:
    queue = f"export-{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=tmp_path)
    async with build_worker(ts_env.client, settings, task_queue=queue):
        d = EpisodeDriver(ts_env, pinned, queue, f"X-{uuid.uuid4().hex[:8]}", "C-EXPORT")
        try:
            await d.send("episode.reported")
            await d.send("enquiry.recorded")
            await d.skip(hours=5)  # the supervisor review (4 h) is missed: alerts
            await d.close()
            state = await d.state()
            handle = ts_env.client.get_workflow_handle(f"episode-{d.episode_id}")
            await handle.result()
        finally:
            await terminate_running(ts_env, STARTED)
    store = open_store(tmp_path, None)

    def read() -> list[tuple[object, ...]]:
        con = store.reader()
        return con.execute(
            "SELECT episode_id, status, risk_at_report, record_key FROM episodes"
        ).fetchall()

    got = await eventually(read, lambda rows: len(rows) == 1)
    history = await handle.fetch_history()
    run_id = history.events[0].workflow_execution_started_event_attributes.original_execution_run_id
    assert got == [(d.episode_id, "closed", "medium", f"{d.episode_id}/{run_id}")]
    con = store.reader()
    kinds = con.execute(
        "SELECT obligation_id, status FROM obligations ORDER BY obligation_id"
    ).fetchall()
    assert kinds == sorted((o.id, o.status.value) for o in state.obligations)
    alerts = con.execute("SELECT alert_id, rank FROM alerts ORDER BY alert_id").fetchall()
    assert alerts == sorted((a.alert_id, a.rank.value) for a in state.alerts)
    assert alerts  # the missed review raised some
    waived = con.execute(
        "SELECT count(*) FROM obligations WHERE status = 'waived' AND waived_reason = 'test drill'"
    ).fetchone()
    assert waived is not None and waived[0] >= 1


async def test_with_the_export_off_an_episode_closes_and_writes_nothing(
    ts_env: WorkflowEnvironment, pinned: PinnedPolicy, tmp_path: Path
) -> None:
    """MISPERS_ANALYTICS_EXPORT=off, which the benches use to measure the export's cost."""
    queue = f"export-off-{uuid.uuid4().hex[:8]}"
    settings = load_settings({"MISPERS_DATA_DIR": str(tmp_path), "MISPERS_ANALYTICS_EXPORT": "off"})
    async with build_worker(ts_env.client, settings, task_queue=queue):
        d = EpisodeDriver(ts_env, pinned, queue, f"X-{uuid.uuid4().hex[:8]}", "C-EXPORT-OFF")
        try:
            await d.send("episode.reported")
            await d.close()
            handle = ts_env.client.get_workflow_handle(f"episode-{d.episode_id}")
            summary = await handle.result()
        finally:
            await terminate_running(ts_env, STARTED)
    assert summary["status"] == "closed"
    con = open_store(tmp_path, None).reader()
    assert con.execute("SELECT count(*) FROM episodes").fetchone() == (0,)
