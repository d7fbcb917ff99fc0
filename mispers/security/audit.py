"""The access audit: who read which child's record, decoded which payloads, posted which event.

Temporal's history already records every change to an episode; it cannot record reads. This
stream does: one record per read of an episode or a child record, per list of episodes, per
decode through the codec server and per accepted event, each saying who (token subject and
role), what, when and from where. Records hold references (episode id, child ref), never the
data read, so the audit itself needs no redaction beyond a safety net on `detail`.

`AuditSink` is the seam for a force's own audit system; the default is an append-only JSON-lines
file, `$MISPERS_DATA_DIR/audit.jsonl`, readable with `mispers audit --child REF`.

Durability (`MISPERS_AUDIT_FSYNC`): `always` (default) fsyncs after every record, so a record
the API acted on survives a power cut; each append costs a disk flush, done off the event loop.
`never` leaves flushing to the kernel: a record survives a crash of the process but not of the
machine. Lines are written with one O_APPEND write each, so several processes (API, CLI) can
share the file without interleaving.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from mispers.config import ConfigError, Settings
from mispers.security.redaction import redact

AUDIT_FILENAME = "audit.jsonl"
FSYNC_VAR = "MISPERS_AUDIT_FSYNC"
SINK_VAR = "MISPERS_AUDIT_SINK"

AuditAction = Literal[
    "read_episode",
    "read_child",
    "list_episodes",
    "decode_payloads",
    "encode_payloads",
    "event_accepted",
]


class AuditWho(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: str
    role: str


class AuditTarget(BaseModel):
    """What was touched. Give `child_ref` whenever it is known (an episode read knows it once
    the state is loaded): `mispers audit --child` finds records by it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    episode_id: str | None = None
    child_ref: str | None = None


DetailValue = str | int | float | bool | None | list[str]


class AuditRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    at: AwareDatetime
    who: AuditWho
    action: AuditAction
    target: AuditTarget = Field(default_factory=AuditTarget)
    from_: str | None = Field(None, alias="from", description="The client's address.")
    detail: dict[str, DetailValue] = Field(default_factory=dict)

    @field_validator("detail")
    @classmethod
    def _no_personal_detail(cls, value: dict[str, DetailValue]) -> dict[str, DetailValue]:
        """A record outlives the data it refers to, so it must never carry that data."""
        redacted = redact(value)
        return redacted if isinstance(redacted, dict) else {}

    @classmethod
    def now(
        cls,
        *,
        subject: str,
        role: str,
        action: AuditAction,
        episode_id: str | None = None,
        child_ref: str | None = None,
        client: str | None = None,
        detail: Mapping[str, DetailValue] | None = None,
    ) -> AuditRecord:
        return cls(
            at=dt.datetime.now(dt.UTC),
            who=AuditWho(subject=subject, role=role),
            action=action,
            target=AuditTarget(episode_id=episode_id, child_ref=child_ref),
            from_=client,
            detail=dict(detail or {}),
        )

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=False)


@runtime_checkable
class AuditSink(Protocol):
    """Where audit records go. `record` returns once the record is as durable as the sink
    promises; the caller answers its request only after that."""

    async def record(self, entry: AuditRecord) -> None: ...


class MemoryAuditSink:
    """Keeps records in a list: for tests of code that audits."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    async def record(self, entry: AuditRecord) -> None:
        self.records.append(entry)


class JsonlAuditSink:
    """Append-only JSON lines, one record per line (see the module docstring for durability)."""

    def __init__(self, path: Path, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        self._lock = threading.Lock()
        self._fd: int | None = None
        self.skipped = 0

    async def record(self, entry: AuditRecord) -> None:
        await asyncio.to_thread(self.record_sync, entry)

    def record_sync(self, entry: AuditRecord) -> None:
        line = (entry.to_json() + "\n").encode()
        with self._lock:
            fd = self._open()
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if self.fsync:
                os.fsync(fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return self._fd

    # Reading ------------------------------------------------------------------------------

    def read(self) -> Iterator[AuditRecord]:
        """Every readable record, oldest first. A torn last line (a crash mid-write) or a line
        that is not a record is skipped, counted in `skipped`."""
        self.skipped = 0
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return
        with handle:
            for raw in handle:
                try:
                    yield AuditRecord.model_validate(json.loads(raw))
                except (ValueError, ValidationError):
                    self.skipped += 1

    def for_child(self, child_ref: str) -> list[AuditRecord]:
        """Everything touching a child: records naming the child, and records naming one of the
        child's episodes (an episode is tied to its child by any record carrying both)."""
        episodes = {
            r.target.episode_id
            for r in self.read()
            if r.target.child_ref == child_ref and r.target.episode_id
        }
        return [
            r
            for r in self.read()
            if r.target.child_ref == child_ref
            or (r.target.child_ref is None and r.target.episode_id in episodes)
        ]

    def for_episode(self, episode_id: str) -> list[AuditRecord]:
        return [r for r in self.read() if r.target.episode_id == episode_id]


def install_audit(app: Any, settings: Settings) -> AuditSink:
    """Give the API app its sink (`app.state.audit`), once, in the app factory; endpoints then
    call `record_access`."""
    sink = audit_sink(settings)
    app.state.audit = sink
    return sink


def app_audit_sink(app: Any, settings: Settings) -> AuditSink:
    sink = getattr(app.state, "audit", None)
    if isinstance(sink, AuditSink):
        return sink
    return install_audit(app, settings)


async def record_access(
    request: Any,
    actor: Any,
    action: AuditAction,
    *,
    episode_id: str | None = None,
    child_ref: str | None = None,
    detail: Mapping[str, DetailValue] | None = None,
) -> None:
    """Record one access from an API endpoint: `actor` is the token's Actor (subject, role),
    `request` the Starlette request (its app holds the sink, its client the address). Await it
    before answering, so nothing is read without a trace."""
    sink = getattr(request.app.state, "audit", None)
    if not isinstance(sink, AuditSink):
        settings = getattr(getattr(request.app.state, "mispers", None), "settings", None)
        if not isinstance(settings, Settings):
            raise RuntimeError(
                "no audit sink: call install_audit(app, settings) in the app factory"
            )
        sink = install_audit(request.app, settings)
    role = getattr(actor.role, "value", actor.role)
    await sink.record(
        AuditRecord.now(
            subject=str(actor.subject),
            role=str(role),
            action=action,
            episode_id=episode_id,
            child_ref=child_ref,
            client=request.client.host if request.client else None,
            detail=detail,
        )
    )


def audit_path(settings: Settings) -> Path:
    return settings.data_dir / AUDIT_FILENAME


def audit_sink(settings: Settings, env: Mapping[str, str] | None = None) -> AuditSink:
    """The configured sink: `MISPERS_AUDIT_SINK=package.module:factory` (called with the
    settings) for a force's own audit system, else the JSON-lines file."""
    env = os.environ if env is None else env
    target = (env.get(SINK_VAR) or "").strip()
    if target:
        module_name, _, attr = target.partition(":")
        try:
            factory: Any = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError):
            raise ConfigError(
                f"{SINK_VAR}={target!r}: expected an importable module:factory"
            ) from None
        sink = factory(settings)
        if not isinstance(sink, AuditSink):
            raise ConfigError(f"{SINK_VAR}={target!r}: the factory did not return an AuditSink")
        return sink
    raw = (env.get(FSYNC_VAR) or "always").strip().lower()
    if raw not in ("always", "never"):
        raise ConfigError(f"{FSYNC_VAR}={raw!r}: must be always or never")
    return JsonlAuditSink(audit_path(settings), fsync=raw == "always")
