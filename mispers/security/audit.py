"""The access audit: who read which child's record, decoded which payloads, posted which event,
and who was refused.

Temporal's history already records every change to an episode; it cannot record reads. This
stream does: one record per read of an episode or a child record, per list of episodes (its
filters and the episode ids it returned), per read of the audit itself, per decode through the
codec server, per accepted event and per refusal of access (401/403). Each says who (token
subject, role, rank), what (action, episode ids, child refs), when, from where (client address,
user agent) and why: the purpose the caller gave in the `X-Mispers-Purpose` header, recorded as
given (`purpose_given: false` when none was). Records hold references, never the data read, so
the audit needs no redaction beyond a safety net on `detail`.

The stream is a hash chain (`audit_chain`): each line carries the SHA-256 of the line before it,
so a deleted, edited or reordered line is detected by `mispers audit verify`. The chain is the
contract of every sink: `AuditSink.record` appends one chained record and returns its hash only
once it is as durable as the sink promises (the caller answers only after that: nothing is
served without its record, and a sink that cannot be written turns the read into a 503), and
`AuditSink.lines` gives the chain back as written, for verification and queries. A force's own
audit system plugs in with `MISPERS_AUDIT_SINK=package.module:factory` (use `chained_lines` to
keep the chain); the default is an append-only JSON-lines file, `$MISPERS_DATA_DIR/audit.jsonl`.

Durability (`MISPERS_AUDIT_FSYNC`): `always` (default) fsyncs after every record, so a record
the API acted on survives a power cut; each append costs a disk flush, done off the event loop.
`never` leaves flushing to the kernel: a record survives a crash of the process but not of the
machine. Each append holds an exclusive lock on the file while it reads the chain's head and
writes its line, so several processes (API replicas, the CLI) extend one chain without forking it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import importlib
import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from mispers.config import ConfigError, Settings
from mispers.security.audit_chain import GENESIS, line_hash, seal
from mispers.security.redaction import redact

AUDIT_FILENAME = "audit.jsonl"
FSYNC_VAR = "MISPERS_AUDIT_FSYNC"
SINK_VAR = "MISPERS_AUDIT_SINK"
PURPOSE_HEADER = "X-Mispers-Purpose"
PURPOSE_MAX = 200
_USER_AGENT_MAX = 300
_TAIL_BYTES = 1 << 16


AuditAction = Literal[
    "read_episode",
    "read_child",
    "list_episodes",
    "list_alerts",
    "read_audit",
    "decode_payloads",
    "encode_payloads",
    "event_accepted",
    "access_refused",
]


class AuditWho(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: str
    role: str
    rank: str | None = None


class AuditTarget(BaseModel):
    """What was touched. Give `child_ref` whenever it is known (an episode read knows it once
    the state is loaded): `mispers audit --child` finds records by it. A list or a decode that
    touched several names them all in `episode_ids` / `child_refs`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    episode_id: str | None = None
    child_ref: str | None = None
    episode_ids: list[str] = Field(default_factory=list)
    child_refs: list[str] = Field(default_factory=list)

    def episodes(self) -> set[str]:
        return {*self.episode_ids, *([self.episode_id] if self.episode_id else [])}

    def children(self) -> set[str]:
        return {*self.child_refs, *([self.child_ref] if self.child_ref else [])}


DetailValue = str | int | float | bool | None | list[str]


class AuditRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    # The chain (set by the sink when the record is written; absent on a record not yet written).
    prev: str | None = None
    at: AwareDatetime
    who: AuditWho
    action: AuditAction
    target: AuditTarget = Field(default_factory=AuditTarget)
    from_: str | None = Field(None, alias="from", description="The client's address.")
    user_agent: str | None = None
    purpose: str | None = Field(None, description="X-Mispers-Purpose, as given.")
    purpose_given: bool = False
    detail: dict[str, DetailValue] = Field(default_factory=dict)
    hash: str | None = None

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
        rank: str | None = None,
        episode_id: str | None = None,
        child_ref: str | None = None,
        episode_ids: Iterable[str] = (),
        child_refs: Iterable[str] = (),
        client: str | None = None,
        user_agent: str | None = None,
        purpose: str | None = None,
        detail: Mapping[str, DetailValue] | None = None,
    ) -> AuditRecord:
        return cls(
            at=dt.datetime.now(dt.UTC),
            who=AuditWho(subject=subject, role=role, rank=rank),
            action=action,
            target=AuditTarget(
                episode_id=episode_id,
                child_ref=child_ref,
                episode_ids=sorted(set(episode_ids)),
                child_refs=sorted(set(child_refs)),
            ),
            from_=client,
            user_agent=user_agent[:_USER_AGENT_MAX] if user_agent else None,
            purpose=purpose,
            purpose_given=purpose is not None,
            detail=dict(detail or {}),
        )

    def body_json(self) -> str:
        """The record without its chain members, as the sink seals it."""
        return self.model_dump_json(by_alias=True, exclude={"prev", "hash"})

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=False)


@runtime_checkable
class AuditSink(Protocol):
    """Where audit records go, as a hash chain (module docstring). `record` appends the entry
    chained to the previous one and returns its hash once it is as durable as the sink
    promises; it raises if it cannot. `lines` yields the chain as stored, oldest first."""

    async def record(self, entry: AuditRecord) -> str: ...

    def lines(self) -> Iterator[bytes]: ...


def chained_lines(records: Iterable[AuditRecord], prev: str = GENESIS) -> Iterator[str]:
    """Seal records into chain lines after `prev`: for a custom sink that stores lines."""
    for entry in records:
        line, prev = seal(prev, entry.body_json())
        yield line


class MemoryAuditSink:
    """Keeps the chain in memory: for tests of code that audits."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []
        self._lines: list[bytes] = []
        self._head = GENESIS

    async def record(self, entry: AuditRecord) -> str:
        line, self._head = seal(self._head, entry.body_json())
        self._lines.append(line.encode() + b"\n")
        self.records.append(parse_line(line.encode()) or entry)
        return self._head

    def lines(self) -> Iterator[bytes]:
        return iter(list(self._lines))


class _Slot:
    """One caller's record in a group commit: its hash, or the error that kept it out."""

    __slots__ = ("body", "digest", "error")

    def __init__(self, body: str) -> None:
        self.body = body
        self.digest: str | None = None
        self.error: BaseException | None = None


class JsonlAuditSink:
    """Append-only JSON lines, one chained record per line (see the module docstring).

    Group commit: callers arriving while an append is in flight queue up, and the next append
    writes all of them with one write and one fsync; each caller returns only once its own line
    is durable. Under concurrent reads this multiplies the records per fsync."""

    def __init__(self, path: Path, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        self._lock = threading.Lock()  # the file, its descriptor and the cached chain head
        self._queue = threading.Condition()
        self._pending: list[_Slot] = []
        self._flushing = False
        self._fd: int | None = None
        self._head = GENESIS
        self._size = -1  # the file size after our last append; another writer changes it
        self.skipped = 0

    async def record(self, entry: AuditRecord) -> str:
        return await asyncio.to_thread(self.record_sync, entry)

    def record_sync(self, entry: AuditRecord) -> str:
        slot = _Slot(entry.body_json())
        with self._queue:
            self._pending.append(slot)
            while slot.digest is None and slot.error is None:
                if self._flushing:
                    self._queue.wait()
                    continue
                self._flushing = True
                batch, self._pending = self._pending, []
                self._queue.release()
                try:
                    self._append(batch)
                finally:
                    self._queue.acquire()
                    self._flushing = False
                    self._queue.notify_all()
        if slot.error is not None:
            raise slot.error
        assert slot.digest is not None
        return slot.digest

    def _append(self, batch: list[_Slot]) -> None:
        try:
            with self._lock:
                fd = self._open()
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    size = os.fstat(fd).st_size
                    torn = False
                    if size != self._size:
                        self._head, torn = _tail(fd, size)
                    head = self._head
                    # A torn last line (a crash mid-write) stays a line of its own: verify
                    # names it.
                    parts = ["\n"] if torn else []
                    for slot in batch:
                        line, slot.digest = seal(head, slot.body)
                        head = slot.digest
                        parts.append(line + "\n")
                    data = "".join(parts).encode()
                    view = memoryview(data)
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                    if self.fsync:
                        os.fsync(fd)
                    self._head, self._size = head, size + len(data)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException as exc:
            for slot in batch:
                slot.digest, slot.error = None, exc
            self._size = -1  # read the head from the file again next time

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                self._size = -1

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        return self._fd

    # Reading ------------------------------------------------------------------------------

    def lines(self) -> Iterator[bytes]:
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return
        with handle:
            yield from handle

    def read(self) -> Iterator[AuditRecord]:
        """Every readable record, oldest first. A torn last line (a crash mid-write) or a line
        that is not a record is skipped, counted in `skipped`."""
        self.skipped = 0
        for raw in self.lines():
            parsed = parse_line(raw)
            if parsed is None:
                self.skipped += 1
            else:
                yield parsed

    def for_child(self, child_ref: str) -> list[AuditRecord]:
        return select(self.read(), child_ref=child_ref)

    def for_episode(self, episode_id: str) -> list[AuditRecord]:
        return select(self.read(), episode_id=episode_id)


def _tail(fd: int, size: int) -> tuple[str, bool]:
    """The chain's head (the last well-formed line's hash) and whether the file ends torn."""
    if size == 0:
        return GENESIS, False
    start = max(0, size - _TAIL_BYTES)
    chunk = os.pread(fd, size - start, start)
    torn = not chunk.endswith(b"\n")
    lines = chunk.split(b"\n")
    if start > 0:
        lines = lines[1:]  # the first piece may be the end of a longer line
    for raw in reversed(lines):
        declared = line_hash(raw)
        if declared is not None:
            return declared, torn
    return GENESIS, torn


def parse_line(raw: bytes) -> AuditRecord | None:
    try:
        return AuditRecord.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        return None


def read_records(sink: AuditSink) -> tuple[list[AuditRecord], int]:
    """Every readable record of a sink, and how many lines were not records."""
    records: list[AuditRecord] = []
    skipped = 0
    for raw in sink.lines():
        parsed = parse_line(raw)
        if parsed is None:
            skipped += 1
        else:
            records.append(parsed)
    return records, skipped


def select(
    records: Iterable[AuditRecord],
    *,
    child_ref: str | None = None,
    episode_id: str | None = None,
    subject: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[AuditRecord]:
    """Records matching every filter given. Everything touching a child: records naming the
    child, and records naming one of the child's episodes without naming a child (an episode is
    tied to its child by any record carrying both)."""
    chosen = list(records)
    if child_ref is not None:
        episodes = {
            e for r in chosen if child_ref in r.target.children() for e in r.target.episodes()
        }
        chosen = [
            r
            for r in chosen
            if child_ref in r.target.children()
            or (not r.target.children() and r.target.episodes() & episodes)
        ]
    if episode_id is not None:
        chosen = [r for r in chosen if episode_id in r.target.episodes()]
    if subject is not None:
        chosen = [r for r in chosen if r.who.subject == subject]
    if since is not None:
        chosen = [r for r in chosen if r.at >= since]
    if until is not None:
        chosen = [r for r in chosen if r.at < until]
    return chosen


class AuditUnavailable(Exception):
    """The sink could not take a record: the request it records must not be answered."""


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
            raise ConfigError(
                f"{SINK_VAR}={target!r}: the factory did not return an AuditSink "
                "(async record(entry) -> hash, lines())"
            )
        return sink
    raw = (env.get(FSYNC_VAR) or "always").strip().lower()
    if raw not in ("always", "never"):
        raise ConfigError(f"{FSYNC_VAR}={raw!r}: must be always or never")
    return JsonlAuditSink(audit_path(settings), fsync=raw == "always")
