"""`mispers dev`, `mispers worker`, `mispers policy`: running the engine side."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from mispers.cli.app import app
from mispers.config import ConfigError, Settings, load_settings
from mispers.domain.locations import RegisterError
from mispers.logs import configure_logging
from mispers.policy import PinnedPolicy, PolicyError, load_policy
from mispers.rota import RotaError, RotaFile


def fail(message: str) -> typer.Exit:
    typer.secho(f"mispers: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


def checked_settings() -> Settings:
    """Settings, the policy and the locations register, validated before anything starts:
    a broken file stops us with a message, never a traceback."""
    try:
        settings = load_settings()
        PinnedPolicy.pin(load_policy(settings.policy_path), settings.time_scale)
        if settings.locations_of_concern is not None:
            from activities.locations import LocationsRegister

            LocationsRegister(settings.locations_of_concern)
        if settings.rota is not None:
            RotaFile(settings.rota)
    except (ConfigError, PolicyError, RegisterError, RotaError) as exc:
        raise fail(str(exc)) from None
    return settings


def exit_skipping_teardown(code: int = 0) -> NoReturn:
    """End a process that used a Temporal client, once its work is done and flushed.

    The SDK's Rust threads can outlive the event loop and call into an interpreter that is
    finalizing, which aborts the process (SIGABRT, "PyGILState_Release", sdk-python#300): a
    worker that drained cleanly would then report a crash to its supervisor. Everything the
    process owes is finished by now, so the interpreter's teardown is skipped."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def checked_key_ring(settings: Settings) -> None:
    """Open (on the embedded default: create) the key ring before any process needs it, so a
    missing or broken ring stops us with its message instead of a worker's traceback."""
    from mispers.security.keyring import KeyRingError, open_ring

    try:
        open_ring(settings)
    except KeyRingError as exc:
        raise fail(str(exc)) from None


@app.command()
def dev() -> None:
    """Run the embedded default: Temporal dev server, worker and API (what `make run` runs)."""
    from mispers.dev import DevError, run_dev

    settings = checked_settings()
    checked_key_ring(settings)
    try:
        code = run_dev(settings, lambda line: typer.echo(line))
    except DevError as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)


@app.command()
def worker() -> None:
    """Run a worker against MISPERS_TEMPORAL_ADDRESS (or the embedded server's address)."""
    from worker import run_worker

    settings = checked_settings()
    checked_key_ring(settings)
    configure_logging()
    try:
        asyncio.run(run_worker(settings))
    except RuntimeError as exc:
        raise fail(f"worker cannot connect to Temporal: {exc}") from None
    exit_skipping_teardown(0)


@app.command("policy")
def policy_check(
    file: Annotated[
        Path | None, typer.Argument(help="Policy file (default: MISPERS_POLICY)")
    ] = None,
) -> None:
    """Validate a force policy file and show its version and key figures."""
    try:
        settings = load_settings()
        policy = load_policy(file or settings.policy_path)
        pinned = PinnedPolicy.pin(policy, settings.time_scale)
    except (ConfigError, PolicyError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"policy {pinned.version_label}: valid")
    typer.echo(f"  child minimum risk: {policy.risk.child_min_level.value}")
    typer.echo(f"  ranks: {' > '.join(r.value for r in reversed(policy.ranks))}")
    for kind, rule in sorted(policy.obligations.items()):
        typer.echo(f"  {kind.value}: owner {rule.owner.value}, due high {rule.due.high}")
