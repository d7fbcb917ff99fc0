"""`mispers alerts list|ack`: the alerts a person on duty is paged with, through the API.

Without `--token` the command signs one with the local secret for `--subject` (default
`cli:<user>`), so on the embedded set-up a sergeant can acknowledge as themselves; elsewhere pass
the token the service issued them.
"""

from __future__ import annotations

import getpass
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from mispers.api.auth import SecretError, load_secret, mint_token
from mispers.cli.app import app
from mispers.cli.engine import checked_settings, fail
from mispers.cli.events import TokenOption, UrlOption, _problem_text, _when, default_url
from mispers.domain.types import AlertState, Rank, Role

alerts_app = typer.Typer(help="List and acknowledge alerts through the API.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")

_out = Console()

SubjectOption = Annotated[
    str | None,
    typer.Option("--subject", help="Who you are, for a locally signed token (your person id)."),
]
RoleOption = Annotated[
    Role, typer.Option("--role", help="Role of a locally signed token (officer or supervisor).")
]


@alerts_app.command("list")
def alerts_list(
    state: Annotated[AlertState | None, typer.Option("--state")] = None,
    rank: Annotated[Rank | None, typer.Option("--rank")] = None,
    episode_id: Annotated[str | None, typer.Option("--episode")] = None,
    recipient: Annotated[
        str | None, typer.Option("--recipient", help="A person id or e-mail address.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    page_token: Annotated[str | None, typer.Option("--page-token")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    subject: SubjectOption = None,
    role: RoleOption = Role.SUPERVISOR,
) -> None:
    """Alerts matching the filters, newest first."""
    params: dict[str, str | int] = {"page_size": limit}
    for name, value in (
        ("state", state.value if state else None),
        ("rank", rank.value if rank else None),
        ("episode_id", episode_id),
        ("recipient", recipient),
        ("page_token", page_token),
    ):
        if value:
            params[name] = value
    with _client(url, token, subject, role) as client:
        body = _call(client, "GET", "/v1/alerts", params=params)
    table = Table("alert", "state", "rank", "raised", "paged", "acknowledged by", title="alerts")
    for a in body.get("alerts", []):
        paged = (a.get("recipient") or {}).get("person_id") or (
            "[red]nobody on duty" if a.get("unstaffed") else "-"
        )
        colour = {"triggered": "red", "acknowledged": "yellow"}.get(a["state"])
        table.add_row(
            a["alert_id"],
            f"[{colour}]{a['state']}" if colour else a["state"],
            a["rank"],
            _when(a.get("raised_at")),
            paged,
            a.get("acknowledged_by") or "",
        )
    _out.print(table)
    if body.get("next_page_token"):
        _out.print(f"more: --page-token {body['next_page_token']}")


@alerts_app.command("ack")
def alerts_ack(
    alert_id: Annotated[str, typer.Argument(help="The alert id, as listed or paged.")],
    note: Annotated[str | None, typer.Option("--note", help="Kept in the timeline.")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    subject: SubjectOption = None,
    role: RoleOption = Role.SUPERVISOR,
) -> None:
    """Acknowledge an alert as yourself: a promise to act before its timeout."""
    with _client(url, token, subject, role) as client:
        body = _call(
            client, "POST", f"/v1/alerts/{alert_id}/ack", json={"note": note} if note else None
        )
    _out.print(f"{body['alert_id']}: {body['status']} — {body['message']}")


def _client(url: str | None, token: str | None, subject: str | None, role: Role) -> httpx.Client:
    settings = checked_settings()
    if token is None:
        try:
            who = subject or f"cli:{getpass.getuser()}"[:200]
            token = mint_token(load_secret(settings), role, who)
        except SecretError as exc:
            raise fail(f"{exc} (or pass --token)") from None
    return httpx.Client(
        base_url=url or default_url(settings),
        headers={"authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(60.0, connect=5.0),
    )


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the API at {client.base_url}: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise fail(_problem_text(response))
    body: dict[str, Any] = response.json()
    return body
