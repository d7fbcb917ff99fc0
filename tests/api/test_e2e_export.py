"""`mispers export --open` and `--backfill` against the running service: open episodes are
snapshotted into the store, closed ones are written from their workflows under the key the
close-time export uses (so the two never count an episode twice)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

from mispers.analytics.store import open_store
from tests.api.conftest import Stack, unique
from tests.api.e2e import accepted, event, report, state
from tests.conftest import eventually, run_command

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def test_export_open_and_backfill(
    stack: Stack, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    still_missing, closed = unique("EXO"), unique("EXC")
    await accepted(http, stack, report(still_missing, unique("C")))
    await accepted(http, stack, report(closed, unique("C")))
    await accepted(http, stack, event("child.found", closed, {"found_at": "2026-01-01T00:00:00Z"}))
    outstanding = [
        o["id"]
        for o in (await state(http, stack, closed))["obligations"]
        if o["status"] in ("open", "overdue")
    ]
    waivers = [{"obligation_id": o, "reason": "export drill"} for o in outstanding]
    await accepted(http, stack, event("closure.approved", closed, {"waivers": waivers}))
    # the worker's own close-time record, in the service's data directory
    service_store = open_store(stack.settings.data_dir, stack.settings.analytics)

    def keys() -> list[tuple[str, str]]:
        con = service_store.reader()
        try:
            return con.execute(
                "SELECT record_key, status FROM episodes WHERE episode_id = ?", [closed]
            ).fetchall()
        finally:
            con.close()

    ((close_time_key, status),) = await eventually(keys, lambda rows: len(rows) == 1, within=30)
    assert status == "closed"

    env = {
        **os.environ,
        "MISPERS_DATA_DIR": str(tmp_path / "data"),  # a store that did not exist before
        "MISPERS_TEMPORAL_ADDRESS": stack.settings.effective_temporal_address,
        "MISPERS_KEYS": str(stack.settings.data_dir / "keys.json"),  # the service's payload keys
        "MISPERS_TASK_QUEUE": stack.settings.task_queue,  # the service's episodes, no others
    }
    env.pop("MISPERS_ANALYTICS", None)
    mispers = [sys.executable, "-m", "mispers"]
    code, output = await run_command(*mispers, "export", "--open", env=env)
    assert code == 0, output
    code, output = await run_command(*mispers, "export", "--backfill", env=env)
    assert code == 0, output
    code, again = await run_command(*mispers, "export", "--backfill", env=env)
    assert code == 0 and "wrote 0 episode records" in again, again

    con = open_store(tmp_path / "data", None).reader()
    rows = dict(
        (r[0], (r[1], r[2]))
        for r in con.execute(
            "SELECT episode_id, status, record_key FROM episodes WHERE episode_id IN (?, ?)",
            [still_missing, closed],
        ).fetchall()
    )
    assert rows[still_missing][0] == "missing"
    assert rows[still_missing][1].startswith(f"{still_missing}/snapshot-")
    assert rows[closed] == ("closed", close_time_key)

    code, output = await run_command(*mispers, "export", env=env)
    assert code == 2 and "--open or --backfill" in output
