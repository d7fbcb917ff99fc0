"""`mispers keys init|list|rotate` and `mispers audit [verify]`: the operator's side of data
protection.

Key material is never printed: `keys list` shows ids, dates and fingerprints, which are enough
to check that two replicas hold the same ring."""

from __future__ import annotations

import datetime as dt
import time

import typer
from rich.console import Console
from rich.table import Table

from mispers.cli.app import app
from mispers.config import ConfigError, Settings, load_settings
from mispers.security.audit import AuditSink, audit_sink, read_records, select
from mispers.security.audit_chain import verify
from mispers.security.keyring import KeyRing, KeyRingError, open_ring, ring_location

keys_app = typer.Typer(
    help="The key ring that encrypts every payload stored in Temporal.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")

_out = Console()
_err = Console(stderr=True)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        _err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None


def _fail(exc: Exception) -> typer.Exit:
    _err.print(f"[red]error:[/] {exc}")
    return typer.Exit(1)


@keys_app.command("init")
def keys_init() -> None:
    """Create the key ring ($MISPERS_KEYS, else $MISPERS_DATA_DIR/keys.json). Needed once per
    deployment against an external Temporal; the embedded default creates it by itself."""
    settings = _settings()
    location = ring_location(settings)
    if location.path.exists():
        raise _fail(
            KeyRingError(f"{location.path} already exists; `mispers keys rotate` adds a key")
        )
    try:
        ring = KeyRing.create(location.path)
    except KeyRingError as exc:
        raise _fail(exc) from None
    _out.print(f"created key ring {location.path} with key {ring.active.id} (mode 0600)")
    _out.print("Back it up: without it the stored histories cannot be read.")


@keys_app.command("list")
def keys_list() -> None:
    """The ring's keys, newest (the one that encrypts) last."""
    settings = _settings()
    try:
        ring = open_ring(settings, create=False)
    except KeyRingError as exc:
        raise _fail(exc) from None
    table = Table("id", "created", "fingerprint", "use", title=str(ring.path))
    for key in ring.keys:
        use = "encrypt + decrypt" if key is ring.active else "decrypt"
        table.add_row(key.id, key.created_at.isoformat(), key.fingerprint, use)
    _out.print(table)


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Add a new key and make it the one that encrypts. Old keys stay so old histories still
    decode; running processes start using the new key within seconds, no restart needed."""
    settings = _settings()
    try:
        ring = open_ring(settings, create=False)
        key = ring.rotate()
    except KeyRingError as exc:
        raise _fail(exc) from None
    _out.print(f"added key {key.id} (fingerprint {key.fingerprint}); it now encrypts new payloads")
    _out.print(f"ring {ring.path}: {', '.join(ring.ids)}")


audit_app = typer.Typer(
    help="The access audit: who read, decoded or posted what, when, from where and why.",
    invoke_without_command=True,
)
app.add_typer(audit_app, name="audit")


def _when(value: str | None, option: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        _err.print(f"{option}: expected an ISO date or date-time, e.g. 2026-11-30T08:00Z")
        raise typer.Exit(2) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@audit_app.callback()
def audit(
    ctx: typer.Context,
    child: str | None = typer.Option(None, "--child", help="A child_ref: who looked at it."),
    episode: str | None = typer.Option(None, "--episode", help="An episode id."),
    subject: str | None = typer.Option(None, "--subject", help="A token subject: what it did."),
    since: str | None = typer.Option(None, "--since", help="From this time (ISO 8601, UTC)."),
    until: str | None = typer.Option(None, "--until", help="Before this time (ISO 8601, UTC)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON record per line."),
) -> None:
    """Who read a child's record or an episode, decoded its payloads, posted to it or was
    refused; `mispers audit verify` checks the hash chain."""
    if ctx.invoked_subcommand is not None:
        return
    if not (child or episode or subject):
        _err.print("give --child REF, --episode ID or --subject WHO (or: mispers audit verify)")
        raise typer.Exit(2)
    start, end = _when(since, "--since"), _when(until, "--until")
    sink = _sink()
    records, skipped = read_records(sink)
    chosen = select(
        records, child_ref=child, episode_id=episode, subject=subject, since=start, until=end
    )
    if as_json:
        for record in chosen:
            typer.echo(record.to_json())
    else:
        table = Table(title=_name(sink))
        table.add_column("at")
        table.add_column("who", no_wrap=True)
        for name in ("role/rank", "action", "episodes", "from", "purpose"):
            table.add_column(name)
        for r in chosen:
            table.add_row(
                r.at.isoformat(timespec="seconds"),
                r.who.subject,
                "/".join(p for p in (r.who.role, r.who.rank) if p),
                r.action,
                ", ".join(sorted(r.target.episodes())[:5]),
                r.from_ or "",
                r.purpose if r.purpose_given else "(no purpose given)",
            )
        _out.print(table)
        _out.print(f"{len(chosen)} record(s)")
    if skipped:
        _err.print(f"{skipped} unreadable line(s) skipped in {_name(sink)}")


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the whole hash chain: exit 0 with the record count and head hash, or exit 1
    naming the first broken line and why."""
    sink = _sink()
    started = time.perf_counter()
    verdict = verify(sink.lines())
    took = time.perf_counter() - started
    if not verdict.ok:
        _err.print(
            f"[red]audit chain broken at line {verdict.broken_line}:[/] {verdict.reason} "
            f"({verdict.lines} record(s) before it hold; {_name(sink)})"
        )
        raise typer.Exit(1)
    _out.print(
        f"audit chain intact: {verdict.lines} record(s), head {verdict.head} "
        f"({_name(sink)}, {took:.2f} s)"
    )


def _sink() -> AuditSink:
    try:
        return audit_sink(_settings())
    except ConfigError as exc:
        _err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None


def _name(sink: AuditSink) -> str:
    path = getattr(sink, "path", None)
    return str(path) if path is not None else type(sink).__name__
