"""`mispers simulate`: what a candidate policy would have done to recorded episodes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mispers.cli.analytics import _date, _progress, _register
from mispers.cli.app import app
from mispers.cli.engine import checked_settings, fail
from mispers.policy import PolicyError, load_policy
from mispers.policy.loader import default_policy_path

_out = Console()
_err = Console(stderr=True)


@app.command()
def simulate(
    policy: Annotated[Path, typer.Option("--policy", help="The candidate policy file.")],
    out: Annotated[Path, typer.Option("--out", help="result.html or result.json")],
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", help="The policy to compare with (default: MISPERS_POLICY)."),
    ] = None,
    from_: Annotated[
        str | None, typer.Option("--from", help="Episodes reported from this day, YYYY-MM-DD.")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="... to this day (included), YYYY-MM-DD.")
    ] = None,
    source: Annotated[
        str,
        typer.Option("--source", help="'analytics' (the store) or a CloudEvents FILE.ndjson."),
    ] = "analytics",
    allow_weaker: Annotated[
        bool,
        typer.Option(
            "--allow-weaker-than-national",
            help="Simulate a candidate weaker than a national rule (listed at the top).",
        ),
    ] = False,
    processes: Annotated[
        int | None, typer.Option("--processes", min=1, help="Worker processes (default: cores).")
    ] = None,
) -> None:
    """Re-apply recorded episodes, as they happened, under the baseline and a candidate policy
    and compare what each would have demanded and escalated (docs/simulation.md)."""
    from mispers.analytics.store import open_store
    from mispers.simulation import run as sim
    from mispers.simulation.compare import compare
    from mispers.simulation.document import write_result
    from mispers.simulation.national import weaker_than_national
    from mispers.simulation.sources import SourceError, from_ndjson, from_store, within
    from mispers.simulation.stream import pseudonymous_register

    if out.suffix.lower() not in (".html", ".json"):
        raise fail(f"--out {out.name}: the comparison is written as .html or .json")
    first = _date(from_, "--from") if from_ else None
    last = _date(to, "--to") if to else None
    if first and last and last < first:
        raise fail("--to is before --from")
    settings = checked_settings()
    try:
        candidate = load_policy(policy)
        base_path = baseline or settings.policy_path or default_policy_path()
        base = load_policy(base_path)
    except PolicyError as exc:
        raise fail(f"policy refused: {exc}") from None
    weaker = weaker_than_national(candidate)
    if weaker:
        _err.print(f"[bold red]{policy} is weaker than a national rule:[/]")
        for w in weaker:
            _err.print(f"  - {w.sentence()}", markup=False, highlight=False)
        if not allow_weaker:
            raise fail(
                "refused: give --allow-weaker-than-national to simulate it anyway "
                "(the list heads the output)"
            )
    try:
        if source == "analytics":
            streams = from_store(open_store(settings.data_dir, settings.analytics))
        else:
            streams = from_ndjson(Path(source))
    except SourceError as exc:
        raise fail(str(exc)) from None
    streams = within(streams, first, last)
    if not streams.by_episode:
        raise fail(f"no episodes reported in the period in {streams.description}")
    times = [
        dt.datetime.fromisoformat(str(b.get("recorded_at") or b["time"]).replace("Z", "+00:00"))
        for bodies in streams.by_episode.values()
        for b in bodies
    ]
    first = first or min(times).astimezone(dt.UTC).date()
    last = last or max(times).astimezone(dt.UTC).date()
    until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    until = max(until, max(times))
    register = _register(settings)
    if streams.pseudonymous_places:
        register = pseudonymous_register(register)
    groups = sim.group_by_child(streams.by_episode)
    work = sim.jobs(groups, base, candidate, until, register)
    with _progress() as bar:
        task = bar.add_task("episodes", total=len(streams.by_episode))
        done = sim.run_and_merge(work, processes, lambda n: bar.advance(task, n))
    done.compared.sort(key=lambda c: c.episode_id)
    labels = {
        "baseline": f"{base.force}/{base.version} ({Path(base_path).name})",
        "candidate": f"{candidate.force}/{candidate.version} ({policy.name})",
    }
    result = compare(
        done.compared,
        first,
        last,
        labels,
        [w.as_dict() for w in weaker],
        streams.description,
        (done.baseline, done.candidate),
    )
    write_result(result, out)
    b, c = result["baseline"], result["candidate"]
    _out.print(
        f"{result['episodes']:,} episodes ({result['events']:,} events): alerts "
        f"{b['alerts_total']:,} -> {c['alerts_total']:,}, overdue {b['overdue_total']:,} -> "
        f"{c['overdue_total']:,}; wrote {out}"
    )
