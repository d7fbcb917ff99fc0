"""`mispers worker-health`: the worker's liveness check, for an exec probe.

A running `mispers worker` refreshes the mtime of `$MISPERS_DATA_DIR/worker.health` every few
seconds while it polls; this command exits 0 when that file is fresh and 1 (with the reason on
stderr) when it is missing or older than `--max-age` seconds. It reads one file and imports
nothing heavy, so a probe every few seconds costs next to nothing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from mispers.cli.app import app
from mispers.config import Settings

HEALTH_FILENAME = "worker.health"


def health_file(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    data_dir = Path(env.get("MISPERS_DATA_DIR") or Settings.data_dir)
    return data_dir / HEALTH_FILENAME


def check_worker_health(path: Path, max_age: float, now: float | None = None) -> str | None:
    """None when healthy, otherwise why not."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return f"{path}: no health file (the worker has not started polling)"
    except OSError as exc:
        return f"{path}: cannot read the health file: {exc.strerror}"
    age = (time.time() if now is None else now) - mtime
    if age > max_age:
        return f"{path}: last refreshed {age:.0f} s ago (limit {max_age:g} s): the worker is stuck"
    return None


@app.command("worker-health")
def worker_health(
    max_age: float = typer.Option(
        30.0, "--max-age", min=1.0, help="Seconds since the last refresh that still count as alive."
    ),
    file: Path | None = typer.Option(
        None, "--file", help="Health file (default: $MISPERS_DATA_DIR/worker.health)."
    ),
) -> None:
    """Exit 0 if the worker on this machine/pod refreshed its health file recently."""
    problem = check_worker_health(file or health_file(), max_age)
    if problem:
        typer.echo(problem, err=True)
        raise typer.Exit(code=1)
    typer.echo("ok")
