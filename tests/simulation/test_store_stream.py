"""A store made before records kept their events: simulating from it says so; writing to it
adds the column and the new records' streams are read back."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from mispers.analytics.record import episode_record
from mispers.analytics.store import TABLES, DuckDBStore
from mispers.offline.synth import synthesize
from mispers.policy import Policy
from mispers.simulation.sources import SourceError, from_store

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_an_older_duckdb_file_is_refused_then_extended(tmp_path: Path, policy: Policy) -> None:
    path = tmp_path / "analytics.duckdb"
    con = duckdb.connect(str(path))
    for table, columns in TABLES.items():
        spec = ", ".join(f'"{c}" {k}' for c, k in columns.items() if c != "stream")
        con.execute(f"CREATE TABLE {table}_rows ({spec})")
    con.close()
    store = DuckDBStore(path)
    with pytest.raises(SourceError, match="hold no event streams"):
        from_store(store)
    episodes = list(synthesize(6, 20, 3, policy, START))
    store.write([episode_record(e.state, "synth", START + dt.timedelta(days=30)) for e in episodes])
    held = from_store(store)
    assert sorted(held.by_episode) == sorted(e.episode_id for e in episodes)
    for e in episodes:
        stream = held.by_episode[e.episode_id]
        assert [b["id"] for b in stream] == [body["id"] for body in e.events]
        assert all("recorded_at" in b for b in stream)
