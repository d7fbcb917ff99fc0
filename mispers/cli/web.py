"""`mispers open`: a one-time link that signs a person in to the dashboard (embedded default)."""

from __future__ import annotations

import datetime as dt

import typer
from rich.console import Console

from mispers.api.auth import SecretError, load_secret
from mispers.cli.app import app
from mispers.config import ConfigError, load_settings
from mispers.domain.types import Rank, Role
from mispers.web.config import web_settings
from mispers.web.tickets import TICKET_TTL, mint_ticket

_err = Console(stderr=True)


def signin_link(public_url: str, ticket: str) -> str:
    return f"{public_url}/ui/signin?ticket={ticket}"


@app.command("open")
def open_dashboard(
    role: Role = typer.Option(..., "--role", help="supervisor, officer or auditor."),
    subject: str = typer.Option(..., "--subject", help="Who signs in, e.g. SGT-7."),
    rank: Rank | None = typer.Option(None, "--rank", help="Defaults from the role."),
    minutes: float = typer.Option(
        TICKET_TTL.total_seconds() / 60, "--minutes", help="How long the link works (max 15)."
    ),
) -> None:
    """Print a one-time sign-in link to the dashboard (valid a few minutes, usable once)."""
    try:
        settings = load_settings()
        config = web_settings(settings)
        secret = load_secret(settings)
    except (ConfigError, SecretError) as exc:
        _err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None
    if role is Role.SYSTEM:
        _err.print("the system role does not read episodes: choose supervisor, officer or auditor")
        raise typer.Exit(2)
    if not config.tickets:
        _err.print("sign-in links are turned off (MISPERS_UI_TICKETS=off)")
        raise typer.Exit(2)
    try:
        ticket = mint_ticket(secret, role, subject, rank, ttl=dt.timedelta(minutes=minutes))
    except ValueError as exc:
        _err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    typer.echo(signin_link(config.public_url, ticket))
