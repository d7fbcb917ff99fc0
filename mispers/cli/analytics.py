"""`mispers synth`, `mispers export`, `mispers report`: the analytics side.

`synth` writes a synthetic stream of CloudEvents (for `mispers send`) and/or runs it through the
offline driver straight into the analytics store; `export` snapshots open episodes or backfills
closed ones from their workflows; `report` renders the inspection report from the store."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mispers.cli.app import app
from mispers.cli.engine import checked_settings, exit_skipping_teardown, fail
from mispers.config import Settings
from mispers.domain.locations import LocationOfConcern, parse_register

_out = Console()
_err = Console(stderr=True)


def _date(value: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise fail(f"{option} {value!r}: must be a date, YYYY-MM-DD") from None


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_err,
    )


def _register(settings: Settings) -> dict[str, list[LocationOfConcern]]:
    if settings.locations_of_concern is None:
        return {}
    return parse_register(settings.locations_of_concern.read_text(encoding="utf-8"))


@app.command()
def synth(
    episodes: Annotated[int, typer.Option("--episodes", min=1, help="Episodes to make.")],
    days: Annotated[int, typer.Option("--days", min=1, help="Days they are reported over.")],
    seed: Annotated[int, typer.Option("--seed", help="The same seed makes the same stream.")] = 1,
    out: Annotated[
        Path | None, typer.Option("--out", help="NDJSON file of CloudEvents, in time order.")
    ] = None,
    into_analytics: Annotated[
        bool,
        typer.Option("--into-analytics", help="Write each episode's record to the store."),
    ] = False,
    start: Annotated[
        str | None, typer.Option("--start", help="First day, YYYY-MM-DD (default: D days ago).")
    ] = None,
    processes: Annotated[
        int | None, typer.Option("--processes", min=1, help="Worker processes (default: cores).")
    ] = None,
) -> None:
    """A synthetic period of episodes shaped on published figures (docs/analytics.md)."""
    from mispers.analytics.bulk import Job, jobs, run_all
    from mispers.analytics.store import open_store

    if out is None and not into_analytics:
        raise fail("say where the episodes go: --out FILE.ndjson and/or --into-analytics")
    settings = checked_settings()
    first = (
        _date(start, "--start")
        if start
        else (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).date()
    )
    begin = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
    template = Job(
        children=[],
        seed=seed,
        days=days,
        start=begin,
        policy_path=str(settings.policy_path) if settings.policy_path else None,
        register=_register(settings),
        data_dir=str(settings.data_dir) if into_analytics else None,
        analytics=settings.analytics,
        keep_events=out is not None,
    )
    work = jobs(template, episodes)
    stream: list[dict[str, object]] = []
    made = events = 0
    with _progress() as bar:
        task = bar.add_task("episodes", total=episodes)
        for done in run_all(work, processes, lambda d: bar.advance(task, d.episodes)):
            made += done.episodes
            events += done.events
            stream.extend(done.stream)
    if out is not None:
        stream.sort(key=lambda e: (str(e["time"]), str(e["id"])))
        with out.open("w", encoding="utf-8") as file:
            for body in stream:
                file.write(json.dumps(body, separators=(",", ":")) + "\n")
        _out.print(f"wrote {events:,} events of {made:,} episodes to {out}")
    if into_analytics:
        store = open_store(settings.data_dir, settings.analytics)
        _out.print(f"wrote {made:,} episode records ({events:,} events) to {store.describe()}")


@app.command()
def export(
    open_episodes: Annotated[
        bool, typer.Option("--open", help="Snapshot every open episode into the store.")
    ] = False,
    backfill: Annotated[
        bool,
        typer.Option("--backfill", help="Records for closed episodes the store does not hold."),
    ] = False,
) -> None:
    """Write analytics records from the episodes' workflows (Temporal)."""
    if open_episodes == backfill:
        raise fail("choose one: --open or --backfill")
    settings = checked_settings()
    try:
        written, unread = asyncio.run(_export(settings, backfill))
    except Exception as exc:  # the engine unreachable, a store that cannot be written
        _err.print(f"mispers: export failed: {type(exc).__name__}: {exc}")
        exit_skipping_teardown(2)
    _out.print(f"wrote {written:,} episode records")
    if unread:
        _err.print(
            f"mispers: {len(unread):,} episode(s) could not be read (no worker answered within "
            f"{READ_TIMEOUT_S:.0f} s), first: {', '.join(unread[:5])}; run the export again"
        )
        exit_skipping_teardown(1)
    exit_skipping_teardown(0)


READ_TIMEOUT_S = 15.0


async def _export(settings: Settings, backfill: bool) -> tuple[int, list[str]]:
    from mispers.analytics.record import episode_record
    from mispers.analytics.store import open_store
    from mispers.domain.messages import EPISODE_WORKFLOW, episode_workflow_id
    from mispers.engine.client import connect, get_episode_state

    store = open_store(settings.data_dir, settings.analytics)
    held: set[str] = set()
    if backfill:
        con = store.reader()
        held = {
            r[0] for r in con.execute("SELECT episode_id FROM episodes WHERE closed").fetchall()
        }
        con.close()
    client = await connect(settings)
    state_clause = "ExecutionStatus = 'Completed'" if backfill else "ExecutionStatus = 'Running'"
    # this service's episodes: its task queue (a shared namespace may hold others')
    query = (
        f"WorkflowType = '{EPISODE_WORKFLOW}' AND TaskQueue = '{settings.task_queue}' "
        f"AND {state_clause}"
    )
    unread: list[str] = []
    now = dt.datetime.now(dt.UTC)
    written = 0
    batch = []
    with _progress() as bar:
        task = bar.add_task("episodes", total=None)
        async for execution in client.list_workflows(query):
            episode_id = execution.id.removeprefix(episode_workflow_id(""))
            bar.advance(task)
            if episode_id in held:
                continue
            try:
                state = await asyncio.wait_for(
                    get_episode_state(client, episode_id), READ_TIMEOUT_S
                )
            except Exception:  # no worker for it, or the engine too busy: said at the end
                unread.append(episode_id)
                continue
            if state is None or not state.reported:
                continue
            if backfill:
                if state.status.value != "closed":
                    continue
                # the key a close-time export uses: the record replaces, never doubles
                record = episode_record(state, execution.run_id, state.closed_at or now)
            else:
                record = episode_record(state, f"snapshot-{now:%Y%m%dT%H%M%S}", now)
            batch.append(record)
            if len(batch) >= 500:
                written += store.write(batch)
                batch = []
    written += store.write(batch)
    return written, unread


@app.command()
def report(
    from_: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD.")],
    to: Annotated[str, typer.Option("--to", help="Last day, YYYY-MM-DD (included).")],
    out: Annotated[Path, typer.Option("--out", help="report.html, report.pdf or report.json")],
) -> None:
    """The inspection report over the analytics store, for the period."""
    from mispers.analytics.document import write_report
    from mispers.analytics.figures import compute, period_problem
    from mispers.analytics.store import open_store

    first, last = _date(from_, "--from"), _date(to, "--to")
    problem = period_problem(first, last)
    if problem is not None:
        field, reason = problem
        raise fail(
            "--to is before --from" if reason.startswith("must not") else f"--{field} {reason}"
        )
    if out.suffix.lower() not in (".html", ".pdf", ".json"):
        raise fail(f"--out {out.name}: the report is written as .html, .pdf or .json")
    settings = checked_settings()
    store = open_store(settings.data_dir, settings.analytics)
    con = store.reader()
    try:
        figures = compute(con, first, last)
    finally:
        con.close()
    write_report(figures, out)
    _out.print(f"{figures['episodes']:,} episodes from {store.describe()}: wrote {out}")
