"""The analytics store: records without personal data, idempotent writes, the latest record of
an episode wins, three processes writing Parquet at once corrupt nothing, and the DuckDB file
is taken in turns on its lock file."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import multiprocessing
import re
from pathlib import Path

import pytest

from mispers.analytics import store as store_module
from mispers.analytics.record import EpisodeRecord, episode_record
from mispers.analytics.store import AnalyticsStore, DuckDBStore, ParquetStore, open_store
from mispers.offline import Recorded, run_episode
from mispers.offline.synth import synthesize
from mispers.policy import Policy, load_policy
from testkit.factories import CHILD_DOB, CHILD_NAME, POSTCODE, event

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def records(n: int, seed: int, policy: Policy, prefix: str = "SYN") -> list[EpisodeRecord]:
    return [
        episode_record(e.state, "synth", e.state.timeline[-1].recorded_at)
        for e in synthesize(n, 90, seed, policy, START, prefix=prefix)
    ]


def test_a_record_holds_no_personal_data(policy: Policy) -> None:
    report = event("episode.reported", "E-PII", START)
    run = run_episode("E-PII", [Recorded.as_it_happened(report)], policy)
    assert run.state.child is not None and run.state.child.name == CHILD_NAME
    text = episode_record(run.state, "r1", START).model_dump_json()
    for personal in (CHILD_NAME, CHILD_DOB, POSTCODE, "outside school", "Lambeth"):
        assert personal not in text
    assert "C-1" in text  # the child's reference stays: repeat counts are per child


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_writing_the_same_record_again_adds_nothing(
    kind: str, tmp_path: Path, policy: Policy
) -> None:
    store = open_store(tmp_path, None if kind == "duckdb" else str(tmp_path / "pq"))
    batch = records(40, 1, policy)
    store.write(batch)
    before = _counts(store)
    for r in batch[:5]:
        store.write([r])  # a retried close-time export
        store.write([r])
    assert _counts(store) == before
    assert before[0] == len({r.episode_id for r in batch}) == 40
    assert before[1] == sum(len(r.obligations) for r in batch)
    assert before[2] == sum(len(r.alerts) for r in batch)


def test_a_closed_record_supersedes_an_open_snapshot(tmp_path: Path, policy: Policy) -> None:
    store = ParquetStore(tmp_path / "pq")
    closed = next(r for r in records(20, 2, policy) if r.closed)
    snapshot = closed.model_copy(
        update={"record_key": f"{closed.episode_id}/snapshot", "closed": False, "status": "found"}
    )
    store.write([snapshot])
    store.write([closed])
    con = store.reader()
    assert con.execute("SELECT status, record_key FROM episodes").fetchall() == [
        ("closed", closed.record_key)
    ]


def _counts(store: AnalyticsStore) -> tuple[int, ...]:
    con = store.reader()
    return tuple(
        int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
        for table in ("episodes", "obligations", "alerts")
    )


def _writer(root: str, seed: int, out: str, kind: str = "parquet") -> None:
    """One worker process: writes its episodes one by one and in batches, some twice."""
    policy = load_policy()
    batch = records(30, seed, policy, prefix=f"W{seed}")
    store = ParquetStore(Path(root)) if kind == "parquet" else DuckDBStore(Path(root))
    for r in batch[:10]:
        store.write([r])
    store.write(batch[10:])
    store.write(batch[:3])  # retried
    Path(out).write_text(json.dumps(sorted(r.episode_id for r in batch)))


def test_three_processes_write_parquet_at_once(tmp_path: Path) -> None:
    root = tmp_path / "analytics"
    expected = _three_writers(tmp_path, root, "parquet")
    store = ParquetStore(root)
    con = store.reader()
    got = [r[0] for r in con.execute("SELECT episode_id FROM episodes ORDER BY 1").fetchall()]
    assert got == expected and len(got) == 90
    assert not list(root.glob(".incoming/*"))  # nothing half-written left behind
    months = {p.name for p in (root / "episodes").iterdir()}
    assert months and all(m.startswith("month=2026-") for m in months)


def _three_writers(tmp_path: Path, root: Path, kind: str) -> list[str]:
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_writer, args=(str(root), seed, str(tmp_path / f"{seed}.json"), kind))
        for seed in (1, 2, 3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    return sorted(
        e for seed in (1, 2, 3) for e in json.loads((tmp_path / f"{seed}.json").read_text())
    )


def test_three_processes_share_the_duckdb_file_one_writer_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "analytics.duckdb"
    expected = _three_writers(tmp_path, path, "duckdb")
    con = DuckDBStore(path).reader()
    got = [r[0] for r in con.execute("SELECT episode_id FROM episodes ORDER BY 1").fetchall()]
    assert got == expected and len(got) == 90


def test_the_duckdb_file_is_taken_in_turns_on_the_lock_file_beside_it(
    tmp_path: Path, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock file the docs name is the one honoured: a writer holding it keeps out both
    writers and readers; a reader holding it keeps out writers only."""
    monkeypatch.setattr(store_module, "LOCK_WAIT_S", 0.3)
    BUSY = re.escape("analytics.duckdb busy for 0.3 s")
    path = tmp_path / "analytics.duckdb"
    store = DuckDBStore(path)
    store.write(records(2, 1, policy))
    with (tmp_path / "analytics.duckdb.lock").open("a") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(TimeoutError, match=BUSY):
            store.write(records(1, 2, policy, prefix="LATE"))
        with pytest.raises(TimeoutError, match=BUSY):
            store.reader()
        fcntl.flock(other, fcntl.LOCK_UN)
        fcntl.flock(other, fcntl.LOCK_SH)
        assert store.reader().execute("SELECT count(*) FROM episodes").fetchone() == (2,)
        with pytest.raises(TimeoutError, match=BUSY):
            store.write(records(1, 2, policy, prefix="LATE"))
        fcntl.flock(other, fcntl.LOCK_UN)
    store.write(records(1, 2, policy, prefix="LATE"))
    assert store.reader().execute("SELECT count(*) FROM episodes").fetchone() == (3,)
