"""`mispers keys init|list|rotate` and `mispers audit`: the operator's side of data protection.

Key material is never printed: `keys list` shows ids, dates and fingerprints, which are enough
to check that two replicas hold the same ring."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from mispers.cli.app import app
from mispers.config import ConfigError, Settings, load_settings
from mispers.security.audit import JsonlAuditSink, audit_path
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


@app.command("audit")
def audit(
    child: str | None = typer.Option(None, "--child", help="A child_ref: who looked at it."),
    episode: str | None = typer.Option(None, "--episode", help="An episode id."),
    as_json: bool = typer.Option(False, "--json", help="One JSON record per line."),
) -> None:
    """Who read a child's record or an episode, decoded its payloads or posted to it."""
    if not child and not episode:
        _err.print("give --child REF or --episode ID")
        raise typer.Exit(2)
    settings = _settings()
    sink = JsonlAuditSink(audit_path(settings))
    records = sink.for_child(child) if child else sink.for_episode(episode or "")
    if child and episode:
        records = [r for r in records if r.target.episode_id in (episode, None)]
    if as_json:
        for record in records:
            typer.echo(record.to_json())
    else:
        table = Table("at", "who", "role", "action", "episode", "from", title=f"{sink.path}")
        for r in records:
            table.add_row(
                r.at.isoformat(timespec="seconds"),
                r.who.subject,
                r.who.role,
                r.action,
                r.target.episode_id or "",
                r.from_ or "",
            )
        _out.print(table)
        _out.print(f"{len(records)} record(s)")
    if sink.skipped:
        _err.print(f"{sink.skipped} unreadable line(s) skipped in {sink.path}")
