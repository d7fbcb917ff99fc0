"""The Typer application shared by the command modules."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="mispers",
    help="Missing-child episodes as durable workflows: run the service, send events, read state.",
    no_args_is_help=True,
    add_completion=False,
)
