"""Where analytics records live: one DuckDB file in the data directory (the embedded default),
or, when `MISPERS_ANALYTICS` names a directory (a mounted bucket on a cluster), Parquet files
partitioned by month that DuckDB, Spark or any warehouse reads.

Four tables, one row per episode, obligation, alert and risk grading. A write is idempotent:
rows carry the record key (episode and run), the DuckDB file replaces an episode's rows in one
transaction, and a Parquet record is one file per table and month named after its key (or,
for a bulk batch, a name no other writer uses), written aside and renamed into place, so
several writers never touch the same file and a reader never sees half of one. Readers keep
the latest record of each episode (a close-time record over an earlier snapshot)."""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import duckdb

from mispers.analytics.record import EpisodeRecord

DUCKDB_FILE = "analytics.duckdb"
TABLES: dict[str, dict[str, str]] = {
    "episodes": {
        "record_key": "VARCHAR",
        "batch": "VARCHAR",
        "episode_id": "VARCHAR",
        "written_at": "TIMESTAMP",
        "closed": "BOOLEAN",
        "status": "VARCHAR",
        "child_ref": "VARCHAR",
        "looked_after": "BOOLEAN",
        "risk_at_report": "VARCHAR",
        "risk_at_close": "VARCHAR",
        "risk_floor": "VARCHAR",
        "flags": "VARCHAR[]",
        "reported_at": "TIMESTAMP",
        "found_at": "TIMESTAMP",
        "closed_at": "TIMESTAMP",
        "repeat_30d": "INTEGER",
        "repeat_90d": "INTEGER",
        "repeat_365d": "INTEGER",
        "location_hits": "INTEGER",
        "location_categories": "VARCHAR[]",
        "policy_version": "VARCHAR",
        "event_times": "JSON",
        "stream": "JSON",
        "month": "VARCHAR",
    },
    "obligations": {
        "record_key": "VARCHAR",
        "batch": "VARCHAR",
        "episode_id": "VARCHAR",
        "looked_after": "BOOLEAN",
        "risk_at_close": "VARCHAR",
        "obligation_id": "VARCHAR",
        "kind": "VARCHAR",
        "owner": "VARCHAR",
        "anchor_at": "TIMESTAMP",
        "due_at": "TIMESTAMP",
        "status": "VARCHAR",
        "met_at": "TIMESTAMP",
        "escalation_level": "INTEGER",
        "waived_reason": "VARCHAR",
        "month": "VARCHAR",
    },
    "alerts": {
        "record_key": "VARCHAR",
        "batch": "VARCHAR",
        "episode_id": "VARCHAR",
        "looked_after": "BOOLEAN",
        "risk_at_close": "VARCHAR",
        "alert_id": "VARCHAR",
        "obligation_id": "VARCHAR",
        "kind": "VARCHAR",
        "rank": "VARCHAR",
        "escalation_level": "INTEGER",
        "due_at": "TIMESTAMP",
        "scheduled_at": "TIMESTAMP",
        "raised_at": "TIMESTAMP",
        "acknowledged_at": "TIMESTAMP",
        "resolved_at": "TIMESTAMP",
        "month": "VARCHAR",
    },
    "grades": {
        "record_key": "VARCHAR",
        "batch": "VARCHAR",
        "episode_id": "VARCHAR",
        "seq": "INTEGER",
        "level": "VARCHAR",
        "at": "TIMESTAMP",
        "rank": "VARCHAR",
        "automatic": "BOOLEAN",
        "flagged": "BOOLEAN",
        "month": "VARCHAR",
    },
}
LOCK_WAIT_S = 30.0


def _ts(value: dt.datetime | None) -> str | None:
    """UTC without an offset: every timestamp in the store is UTC."""
    if value is None:
        return None
    text = value.isoformat(sep=" ")
    if text.endswith("+00:00"):
        return text[:-6]
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")


def rows(records: Iterable[EpisodeRecord], batch: str = "") -> dict[str, list[dict[str, Any]]]:
    """The records flattened into the four tables; `batch` names the write."""
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}
    for r in records:
        month = r.month
        common = {"record_key": r.record_key, "batch": batch, "episode_id": r.episode_id}
        out["episodes"].append(
            {
                **common,
                "written_at": _ts(r.written_at),
                "closed": r.closed,
                "status": r.status,
                "child_ref": r.child_ref,
                "looked_after": r.looked_after,
                "risk_at_report": r.risk_at_report,
                "risk_at_close": r.risk_at_close,
                "risk_floor": r.risk_floor,
                "flags": r.flags,
                "reported_at": _ts(r.reported_at),
                "found_at": _ts(r.found_at),
                "closed_at": _ts(r.closed_at),
                "repeat_30d": r.repeat_30d,
                "repeat_90d": r.repeat_90d,
                "repeat_365d": r.repeat_365d,
                "location_hits": r.location_hits,
                "location_categories": r.location_categories,
                "policy_version": r.policy_version,
                "event_times": {k: [_ts(t) for t in v] for k, v in r.event_times.items()},
                "stream": r.stream,
                "month": month,
            }
        )
        cut = {**common, "looked_after": r.looked_after, "risk_at_close": r.risk_at_close}
        for o in r.obligations:
            out["obligations"].append(
                {
                    **cut,
                    "obligation_id": o.obligation_id,
                    "kind": o.kind,
                    "owner": o.owner,
                    "anchor_at": _ts(o.anchor_at),
                    "due_at": _ts(o.due_at),
                    "status": o.status,
                    "met_at": _ts(o.met_at),
                    "escalation_level": o.escalation_level,
                    "waived_reason": o.waived_reason,
                    "month": month,
                }
            )
        for a in r.alerts:
            out["alerts"].append(
                {
                    **cut,
                    "alert_id": a.alert_id,
                    "obligation_id": a.obligation_id,
                    "kind": a.kind,
                    "rank": a.rank,
                    "escalation_level": a.escalation_level,
                    "due_at": _ts(a.due_at),
                    "scheduled_at": _ts(a.scheduled_at),
                    "raised_at": _ts(a.raised_at),
                    "acknowledged_at": _ts(a.acknowledged_at),
                    "resolved_at": _ts(a.resolved_at),
                    "month": month,
                }
            )
        for seq, g in enumerate(r.grades):
            out["grades"].append(
                {
                    **common,
                    "seq": seq,
                    "level": g.level,
                    "at": _ts(g.at),
                    "rank": g.rank,
                    "automatic": g.automatic,
                    "flagged": g.flagged,
                    "month": month,
                }
            )
    return out


def _columns(table: str) -> str:
    spec = ", ".join(f"'{name}': '{kind}'" for name, kind in TABLES[table].items())
    return "{" + spec + "}"


@contextlib.contextmanager
def _ndjson(items: list[dict[str, Any]], work: Path) -> Iterator[str]:
    fd, name = tempfile.mkstemp(suffix=".ndjson", dir=work)
    try:
        with os.fdopen(fd, "w") as out:
            for item in items:
                out.write(json.dumps(item, separators=(",", ":")))
                out.write("\n")
        yield name
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def _select(table: str, source: str) -> str:
    names = ", ".join(f'"{c}"' for c in TABLES[table])
    return (
        f"SELECT {names} FROM read_json('{source}', format='newline_delimited', "
        f"columns={_columns(table)})"
    )


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(key: str) -> str:
    return _SAFE.sub("_", key)


class AnalyticsStore(abc.ABC):
    """Write records; open a DuckDB connection with the four views (`episodes`,
    `obligations`, `alerts`, `grades`) over the latest record of each episode."""

    @abc.abstractmethod
    def write(self, records: list[EpisodeRecord], name: str | None = None) -> int: ...

    @abc.abstractmethod
    def reader(self) -> duckdb.DuckDBPyConnection: ...

    @abc.abstractmethod
    def describe(self) -> str: ...


def _latest_views(con: duckdb.DuckDBPyConnection, sources: dict[str, str]) -> None:
    """The latest record of each episode (closed over open, then the newest), and the rows of
    that record in the other tables: read once into memory, as a report asks a score of
    questions of them."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE episodes AS SELECT * FROM {sources['episodes']} "
        "QUALIFY row_number() OVER (PARTITION BY episode_id "
        "ORDER BY closed DESC, written_at DESC, batch DESC) = 1"
    )
    for table in ("obligations", "alerts", "grades"):
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT t.* FROM {sources[table]} t "
            "SEMI JOIN episodes e ON t.record_key = e.record_key AND t.batch = e.batch"
        )


class DuckDBStore(AnalyticsStore):
    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return f"DuckDB file {self.path}"

    @contextlib.contextmanager
    def _turn(self, *, writing: bool) -> Iterator[None]:
        """Whole turns at the file between processes, from before the connection opens until
        after it has closed. DuckDB takes its own lock inside the open and releases it inside
        the close; once, of three writers, one that had been granted the file found it shorter
        than its header said (a block past the end), which a turn that spans the whole close
        rules out. Readers share a turn; a writer has it alone."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        mode = fcntl.LOCK_EX if writing else fcntl.LOCK_SH
        deadline = time.monotonic() + LOCK_WAIT_S
        with lock_path.open("a") as handle:
            while True:
                try:
                    fcntl.flock(handle, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"{self.path} busy for {LOCK_WAIT_S:g} s (another process)"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        """The file admits one writing process at a time: wait for the other to finish."""
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except (duckdb.IOException, duckdb.ConnectionException) as exc:
                # another process holds the file, or (ConnectionException) this process has it
                # open in the other mode for a moment
                busy = "lock" in str(exc).lower() or isinstance(exc, duckdb.ConnectionException)
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def write(self, records: list[EpisodeRecord], name: str | None = None) -> int:
        if not records:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tables = rows(records, name or "")
        with self._turn(writing=True):
            self._write(tables, [r.episode_id for r in records])
        return len(records)

    def _write(self, tables: dict[str, list[dict[str, Any]]], episode_ids: list[str]) -> None:
        con = self._connect(read_only=False)
        try:
            for table, columns in TABLES.items():
                spec = ", ".join(f'"{c}" {k}' for c, k in columns.items())
                con.execute(f"CREATE TABLE IF NOT EXISTS {table}_rows ({spec})")
                for column, kind in columns.items():  # a file made before a column was added
                    con.execute(
                        f'ALTER TABLE {table}_rows ADD COLUMN IF NOT EXISTS "{column}" {kind}'
                    )
            with _ndjson([{"episode_id": e} for e in episode_ids], self.path.parent) as ids:
                con.execute("BEGIN")
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE incoming AS SELECT episode_id FROM "
                    f"read_json('{ids}', format='newline_delimited', "
                    "columns={'episode_id': 'VARCHAR'})"
                )
                for table in TABLES:
                    con.execute(
                        f"DELETE FROM {table}_rows WHERE episode_id IN "
                        "(SELECT episode_id FROM incoming)"
                    )
                for table, items in tables.items():
                    if items:
                        with _ndjson(items, self.path.parent) as source:
                            con.execute(
                                f"INSERT INTO {table}_rows BY NAME {_select(table, source)}"
                            )
                con.execute("COMMIT")
        finally:
            con.close()

    def reader(self) -> duckdb.DuckDBPyConnection:
        if not self.path.exists():
            con = duckdb.connect()
            _latest_views(con, _empty(con))
            return con
        with self._turn(writing=False):
            con = self._connect(read_only=True)
            _latest_views(con, {t: f"{t}_rows" for t in TABLES})
        return con


def _empty(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    for table, columns in TABLES.items():
        spec = ", ".join(f'"{c}" {k}' for c, k in columns.items())
        con.execute(f"CREATE TEMP TABLE {table}_empty ({spec})")
    return {t: f"{t}_empty" for t in TABLES}


class ParquetStore(AnalyticsStore):
    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self) -> str:
        return f"Parquet files under {self.root} (partitioned by month)"

    def write(self, records: list[EpisodeRecord], name: str | None = None) -> int:
        """One file per table and month; `name` (default: the record key of a single record,
        else a fresh unique name) is never shared with another writer's file."""
        if not records:
            return 0
        if name is None:
            name = safe_name(records[0].record_key) if len(records) == 1 else uuid.uuid4().hex
        work = self.root / ".incoming"
        work.mkdir(parents=True, exist_ok=True)
        tables = rows(records, name)
        con = duckdb.connect()
        try:
            for table, items in tables.items():
                by_month: dict[str, list[dict[str, Any]]] = {}
                for item in items:
                    by_month.setdefault(item["month"], []).append(item)
                for month, chunk in by_month.items():
                    folder = self.root / table / f"month={month}"
                    folder.mkdir(parents=True, exist_ok=True)
                    final = folder / f"{name}.parquet"
                    aside = work / f"{name}.{table}.{month}.{uuid.uuid4().hex}.parquet"
                    with _ndjson(chunk, work) as source:
                        names = ", ".join(f'"{c}"' for c in TABLES[table] if c != "month")
                        con.execute(
                            f"COPY (SELECT {names} FROM ({_select(table, source)})) "
                            f"TO '{aside}' (FORMAT parquet, COMPRESSION zstd)"
                        )
                    os.replace(aside, final)
        finally:
            con.close()
        return len(records)

    def reader(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        sources: dict[str, str] = {}
        empty = _empty(con)
        for table in TABLES:
            pattern = self.root / table / "month=*" / "*.parquet"
            if any((self.root / table).glob("month=*/*.parquet")):
                sources[table] = (
                    f"read_parquet('{pattern}', hive_partitioning=true, "
                    f"hive_types={{'month': 'VARCHAR'}}, union_by_name=true)"
                )
            else:
                sources[table] = empty[table]
        _latest_views(con, sources)
        return con


def open_store(data_dir: Path, analytics: str | None) -> AnalyticsStore:
    """`MISPERS_ANALYTICS` unset: the DuckDB file in the data directory; a path ending in
    `.duckdb`: that DuckDB file; any other path: a directory of Parquet files."""
    if not analytics:
        return DuckDBStore(data_dir / DUCKDB_FILE)
    if analytics.endswith(".duckdb"):
        return DuckDBStore(Path(analytics))
    return ParquetStore(Path(analytics))
