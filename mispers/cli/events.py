"""`mispers api`, `mispers token`, `mispers send`, `mispers episodes list|show`: the HTTP side.

`send` and `episodes` talk to the API, not to Temporal, so they see exactly what any other client
sees (roles, refusals, problem answers). Without `--token` they sign one with the local secret,
which is what makes them work out of the box next to `make run`. Printed tables leave out free
text and personal fields: a terminal is often shared or recorded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from mispers.api.auth import DEFAULT_TTL, SecretError, load_secret, mint_token
from mispers.api.envelope import BATCH_MEDIA_TYPE
from mispers.api.ingest import MAX_BODY_BYTES
from mispers.cli.app import app
from mispers.cli.engine import checked_key_ring, checked_settings, exit_skipping_teardown, fail
from mispers.config import ConfigError, Settings
from mispers.domain.authority import RankError
from mispers.domain.types import EpisodeStatus, Rank, RiskLevel, Role
from mispers.security.audit import PURPOSE_HEADER, PURPOSE_MAX

episodes_app = typer.Typer(help="Read episodes through the API.", no_args_is_help=True)
app.add_typer(episodes_app, name="episodes")

_out = Console()
_err = Console(stderr=True)

# Batches stay well under the API's 1 MiB limit and keep the progress bar moving.
SEND_BATCH_EVENTS = 50
SEND_BATCH_BYTES = MAX_BODY_BYTES // 2
_TTL = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="API base URL (default: http://127.0.0.1:$MISPERS_HTTP_PORT)."),
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="MISPERS_TOKEN", help="Bearer token (default: signed locally)."),
]
PurposeOption = Annotated[
    str | None,
    typer.Option(
        "--purpose",
        envvar="MISPERS_PURPOSE",
        help="Why you are reading (at most 200 characters), recorded in the access audit.",
    ),
]


@app.command()
def api() -> None:
    """Run the HTTP API alone, against MISPERS_TEMPORAL_ADDRESS (or the embedded server)."""
    from mispers.api.server import ApiStartupError, serve_api

    settings = checked_settings()
    checked_key_ring(settings)
    try:
        asyncio.run(serve_api(settings))
    except (ApiStartupError, SecretError, ConfigError) as exc:
        raise fail(str(exc)) from None
    exit_skipping_teardown(0)


def parse_ttl(text: str) -> dt.timedelta:
    match = _TTL.match(text)
    if not match or int(match.group(1)) == 0:
        raise typer.BadParameter("a positive duration such as 3600, 90m, 12h or 7d")
    return dt.timedelta(seconds=int(match.group(1)) * _TTL_UNITS[match.group(2)])


@app.command()
def token(
    role: Annotated[Role, typer.Option("--role", help="system, officer, supervisor or auditor.")],
    subject: Annotated[
        str, typer.Option("--subject", help="Who acts (an officer or system id, no personal data).")
    ],
    ttl: Annotated[
        str, typer.Option("--ttl", help="Lifetime: seconds or 90m, 12h, 7d.")
    ] = f"{int(DEFAULT_TTL.total_seconds() // 3600)}h",
    rank: Annotated[
        Rank | None,
        typer.Option(
            "--rank",
            help="officer, sergeant, inspector or superintendent; default: officer for an "
            "officer, sergeant for a supervisor; none for system and auditor.",
        ),
    ] = None,
) -> None:
    """Print a bearer token the local service accepts (signed with its secret). A rank in an
    event's data may not exceed the token's rank (a system token may post any)."""
    settings = checked_settings()
    lifetime = parse_ttl(ttl)
    try:
        typer.echo(mint_token(load_secret(settings), role, subject, lifetime, rank=rank))
    except SecretError as exc:
        raise fail(str(exc)) from None
    except RankError as exc:
        raise fail(f"--rank: {exc}") from None
    except ValueError:
        raise fail("--subject must be 1 to 200 characters") from None


# --- sending --------------------------------------------------------------------------------


def read_events(path: Path) -> list[dict[str, Any]]:
    """A JSON array, a single JSON object, or NDJSON (one event per line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise fail(f"{path}: {exc.strerror}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = [_ndjson_line(path, number, line) for number, line in _lines(text)]
    events = document if isinstance(document, list) else [document]
    if not all(isinstance(event, dict) for event in events):
        raise fail(f"{path}: every event must be a JSON object")
    return events


def _lines(text: str) -> Iterator[tuple[int, str]]:
    return ((n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip())


def _ndjson_line(path: Path, number: int, line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise fail(f"{path}:{number}: not valid JSON (column {exc.colno})") from None


def batches(events: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    size = 2
    for event in events:
        encoded = len(json.dumps(event)) + 1
        if batch and (len(batch) >= SEND_BATCH_EVENTS or size + encoded > SEND_BATCH_BYTES):
            yield batch
            batch, size = [], 2
        batch.append(event)
        size += encoded
    if batch:
        yield batch


@dataclass
class SendSummary:
    accepted: int = 0
    duplicate: int = 0
    refused: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, item: dict[str, Any]) -> None:
        status = item.get("status")
        if status == "accepted":
            self.accepted += 1
        elif status == "duplicate":
            self.duplicate += 1
        else:
            self.refused += 1
            problem = item.get("problem") or {}
            reason = _reason(problem)
            self.reasons[reason] += 1
            if len(self.examples) < 10:
                self.examples.append(
                    (str(item.get("event_id") or "?"), reason, str(problem.get("detail") or ""))
                )


def _reason(problem: dict[str, Any]) -> str:
    refusal = problem.get("refusal")
    if isinstance(refusal, dict) and refusal.get("code"):
        return f"{problem.get('status')} {refusal['code']}"
    kind = str(problem.get("type", "")).rsplit(":", 1)[-1]
    return f"{problem.get('status')} {kind}"


@app.command()
def send(
    file: Annotated[Path, typer.Argument(help="CloudEvents as a JSON array or NDJSON.")],
    url: UrlOption = None,
    token: TokenOption = None,
    role: Annotated[
        Role, typer.Option("--role", help="Role of the locally signed token (without --token).")
    ] = Role.SYSTEM,
    rank: Annotated[
        Rank | None,
        typer.Option(
            "--rank", help="Rank of the locally signed token (default: the role's own rank)."
        ),
    ] = None,
) -> None:
    """Post CloudEvents from a file (in order; batches of up to 50) and summarise the outcome.
    Exits 1 if any event was refused."""
    settings = checked_settings()
    events = read_events(file)
    summary = SendSummary()
    with (
        _client(settings, url, token, role, rank=rank) as client,
        Progress(
            TextColumn("sending"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=_err,
            transient=False,
        ) as progress,
    ):
        task = progress.add_task("events", total=len(events))
        for batch in batches(events):
            answer = _post(client, batch)
            for item in answer:
                summary.add(item)
            progress.advance(task, len(batch))
    _print_summary(summary)
    if summary.refused:
        raise typer.Exit(1)


def _post(client: httpx.Client, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    try:
        response = client.post(
            "/v1/events",
            content=json.dumps(batch).encode(),
            headers={"content-type": BATCH_MEDIA_TYPE},
        )
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the API at {client.base_url}: {type(exc).__name__}") from None
    if response.status_code != 202:
        raise fail(_problem_text(response))
    answer: list[dict[str, Any]] = response.json()
    return answer


def _print_summary(summary: SendSummary) -> None:
    table = Table("outcome", "events", title="mispers send")
    table.add_row("[green]accepted", str(summary.accepted))
    table.add_row("duplicate", str(summary.duplicate))
    table.add_row("[red]refused" if summary.refused else "refused", str(summary.refused))
    _out.print(table)
    if summary.reasons:
        reasons = Table("reason", "events", title="refused, by reason")
        for reason, count in summary.reasons.most_common():
            reasons.add_row(reason, str(count))
        _out.print(reasons)
        examples = Table("event id", "reason", "detail", title="first refusals")
        for row in summary.examples:
            examples.add_row(*row)
        _out.print(examples)


# --- reading --------------------------------------------------------------------------------


@episodes_app.command("list")
def episodes_list(
    status: Annotated[EpisodeStatus | None, typer.Option("--status")] = None,
    risk: Annotated[RiskLevel | None, typer.Option("--risk")] = None,
    overdue: Annotated[
        bool | None,
        typer.Option("--overdue/--not-overdue", help="Only with / without overdue work."),
    ] = None,
    child_ref: Annotated[str | None, typer.Option("--child-ref")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    page_token: Annotated[str | None, typer.Option("--page-token")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    purpose: PurposeOption = None,
) -> None:
    """Episodes matching the filters, from Temporal visibility."""
    settings = checked_settings()
    params: dict[str, str | int] = {"page_size": limit}
    if status:
        params["status"] = status.value
    if risk:
        params["risk"] = risk.value
    if overdue is not None:
        params["overdue"] = str(overdue).lower()
    if child_ref:
        params["child_ref"] = child_ref
    if page_token:
        params["page_token"] = page_token
    with _client(settings, url, token, Role.AUDITOR, purpose) as client:
        body = _get(client, "/v1/episodes", params)
    table = Table(
        "episode", "status", "risk", "child", "overdue", "next deadline", title="episodes"
    )
    for episode in body.get("episodes", []):
        overdue_count = int(episode.get("overdue_count") or 0)
        table.add_row(
            episode["episode_id"],
            episode.get("status") or "",
            _risk(episode.get("risk_level")),
            episode.get("child_ref") or "",
            f"[red]{overdue_count}" if overdue_count else "0",
            _when(episode.get("next_deadline")),
        )
    _out.print(table)
    if body.get("next_page_token"):
        _out.print(f"more: --page-token {body['next_page_token']}")


@episodes_app.command("show")
def episodes_show(
    episode_id: Annotated[str, typer.Argument(help="The episode id (the events' subject).")],
    url: UrlOption = None,
    token: TokenOption = None,
    purpose: PurposeOption = None,
) -> None:
    """One episode: risk, flags, obligations with deadlines, alerts and the timeline."""
    settings = checked_settings()
    with _client(settings, url, token, Role.AUDITOR, purpose) as client:
        state = _get(client, f"/v1/episodes/{episode_id}", {})
    risk = state.get("risk") or {}
    repeat = state.get("repeat") or {}
    head = Table.grid(padding=(0, 2))
    head.add_row("episode", state.get("episode_id", ""))
    head.add_row("status", state.get("status", ""))
    head.add_row(
        "child",
        f"{state.get('child_ref') or ''}"
        + (" (looked after)" if state.get("looked_after") else ""),
    )
    head.add_row("risk", f"{_risk(risk.get('level'))} (floor {risk.get('floor', '-')})")
    head.add_row("flags", ", ".join(state.get("flags") or []) or "-")
    head.add_row(
        "repeat",
        f"{repeat.get('episodes_30d', 0)} in 30 d, {repeat.get('episodes_90d', 0)} in 90 d, "
        f"{repeat.get('episodes_365d', 0)} in 365 d",
    )
    head.add_row("policy", state.get("policy_version", ""))
    _out.print(head)

    obligations = Table("id", "kind", "due", "status", "level", "met", title="obligations")
    for o in state.get("obligations") or []:
        status = o.get("status", "")
        obligations.add_row(
            o.get("id", ""),
            o.get("kind", ""),
            _when(o.get("due_at")),
            f"[red]{status}" if status == "overdue" else status,
            str(o.get("escalation_level", 0)),
            _when(o.get("met_at")),
        )
    _out.print(obligations)

    alerts = state.get("alerts") or []
    if alerts:
        table = Table("alert", "obligation", "rank", "raised", "acknowledged", title="alerts")
        for a in alerts:
            table.add_row(
                a.get("alert_id", ""),
                a.get("obligation_id", ""),
                a.get("rank", ""),
                _when(a.get("raised_at")),
                a.get("acknowledged_by") or "",
            )
        _out.print(table)

    communications = state.get("communications") or []
    if communications:
        table = Table("at", "direction", "authority", "method", "purpose", title="social services")
        for c in communications:
            table.add_row(
                _when(c.get("at")),
                c.get("direction", ""),
                c.get("authority", ""),
                c.get("method", ""),
                c.get("purpose", ""),
            )
        _out.print(table)

    # The type is what a reader scans for: other columns wrap before it is cut (an alert's
    # own entries carry long event ids).
    timeline = Table(
        "time",
        Column("type", no_wrap=True),
        "actor",
        "posted by",
        Column("event id", overflow="fold"),
        title="timeline",
    )
    for entry in state.get("timeline") or []:
        posted = entry.get("posted_by") or {}
        timeline.add_row(
            _when(entry.get("time")),
            str(entry.get("type", "")).removeprefix("mispers."),
            entry.get("actor") or "",
            f"{posted.get('subject', '')} ({posted.get('role', '')})" if posted else "",
            entry.get("event_id", ""),
        )
    _out.print(timeline)


def _get(client: httpx.Client, path: str, params: dict[str, str | int]) -> dict[str, Any]:
    try:
        response = client.get(path, params=params)
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the API at {client.base_url}: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise fail(_problem_text(response))
    body: dict[str, Any] = response.json()
    return body


# --- shared ---------------------------------------------------------------------------------


def _client(
    settings: Settings,
    url: str | None,
    token: str | None,
    role: Role,
    purpose: str | None = None,
    rank: Rank | None = None,
) -> httpx.Client:
    """An API client with a token (signed locally unless given) and, for reads, the purpose the
    access audit records (`X-Mispers-Purpose`)."""
    headers: dict[str, str] = {}
    if purpose is not None:
        if len(purpose) > PURPOSE_MAX:
            raise fail(f"--purpose is at most {PURPOSE_MAX} characters")
        if not purpose.isascii() or not purpose.isprintable():
            raise fail("--purpose must be printable ASCII (it travels as an HTTP header)")
        headers[PURPOSE_HEADER] = purpose
    if token is None:
        try:
            token = mint_token(
                load_secret(settings), role, f"cli:{getpass.getuser()}"[:200], rank=rank
            )
        except (SecretError, RankError) as exc:
            raise fail(f"{exc} (or pass --token)") from None
    return httpx.Client(
        base_url=url or default_url(settings),
        headers={"authorization": f"Bearer {token}", **headers},
        timeout=httpx.Timeout(60.0, connect=5.0),
    )


def default_url(settings: Settings) -> str:
    host = settings.http_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http_port}"


def _problem_text(response: httpx.Response) -> str:
    try:
        problem = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(problem, dict):
        return (
            f"HTTP {response.status_code}: {problem.get('title', '')}: {problem.get('detail', '')}"
        )
    return f"HTTP {response.status_code}"


def _risk(level: str | None) -> str:
    colours = {"high": "red", "medium": "yellow"}
    if not level:
        return "-"
    colour = colours.get(level)
    return f"[{colour}]{level}" if colour else level


def _when(value: str | None) -> str:
    if not value:
        return "-"
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
