"""`mispers worker-health`, the worker's liveness probe: fresh file -> 0, stale or missing -> 1.
(The scale-out drill runs it against real workers, live and killed.)"""

from __future__ import annotations

import os
import time
from pathlib import Path

from typer.testing import CliRunner

from mispers.cli import app
from mispers.cli.health import check_worker_health, health_file


def test_fresh_stale_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "worker.health"
    assert "no health file" in (check_worker_health(path, 30) or "")
    path.touch()
    assert check_worker_health(path, 30) is None
    old = time.time() - 45
    os.utime(path, (old, old))
    problem = check_worker_health(path, 30)
    assert problem is not None and "45 s ago" in problem and "limit 30 s" in problem
    assert check_worker_health(path, 60) is None


def test_health_file_follows_the_data_dir(tmp_path: Path) -> None:
    assert health_file({"MISPERS_DATA_DIR": str(tmp_path)}) == tmp_path / "worker.health"
    assert health_file({}) == Path(".mispers") / "worker.health"


def test_command_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"MISPERS_DATA_DIR": str(tmp_path)}
    missing = runner.invoke(app, ["worker-health", "--max-age", "30"], env=env)
    assert missing.exit_code == 1 and "no health file" in missing.output
    (tmp_path / "worker.health").touch()
    fresh = runner.invoke(app, ["worker-health", "--max-age", "30"], env=env)
    assert fresh.exit_code == 0 and fresh.output.strip() == "ok"
    old = time.time() - 120
    os.utime(tmp_path / "worker.health", (old, old))
    stale = runner.invoke(app, ["worker-health"], env=env)
    assert stale.exit_code == 1 and "stuck" in stale.output
    elsewhere = tmp_path / "other.health"
    elsewhere.touch()
    explicit = runner.invoke(app, ["worker-health", "--file", str(elsewhere)], env=env)
    assert explicit.exit_code == 0
