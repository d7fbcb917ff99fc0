"""The access audit: append-only JSON lines, queried by child."""

from __future__ import annotations

import asyncio
import json
import stat
import threading
from pathlib import Path

import pytest

from mispers.config import ConfigError, Settings
from mispers.security.audit import (
    AuditRecord,
    AuditSink,
    JsonlAuditSink,
    MemoryAuditSink,
    audit_sink,
)
from mispers.security.audit_chain import GENESIS, verify
from mispers.security.redaction import REDACTED
from tests.security.test_codec import NAME


def rec(subject: str, action: str = "read_episode", **target: str) -> AuditRecord:
    return AuditRecord.now(
        subject=subject,
        role="supervisor",
        action=action,  # type: ignore[arg-type]
        client="10.0.0.9",
        **target,  # type: ignore[arg-type]
    )


async def test_records_append_as_one_json_line_each_in_an_owner_only_file(tmp_path: Path) -> None:
    sink = JsonlAuditSink(tmp_path / "audit.jsonl")
    await sink.record(rec("sgt-1", "event_accepted", episode_id="EP-1", child_ref="C-1"))
    await sink.record(rec("insp-2", "read_episode", episode_id="EP-1"))
    sink.close()

    path = tmp_path / "audit.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["who"] == {"subject": "sgt-1", "role": "supervisor", "rank": None}
    assert first["action"] == "event_accepted"
    assert first["target"] == {
        "episode_id": "EP-1",
        "child_ref": "C-1",
        "episode_ids": [],
        "child_refs": [],
    }
    assert first["from"] == "10.0.0.9"
    assert first["at"].endswith("Z") or "+00:00" in first["at"]
    assert (first["purpose"], first["purpose_given"]) == (None, False)
    # The chain: the first line follows nothing, the second follows the first.
    assert first["prev"] == GENESIS and lines[0].startswith('{"prev":"')
    assert json.loads(lines[1])["prev"] == first["hash"]

    # Appending never rewrites: a new sink on the same file adds after what is there.
    again = JsonlAuditSink(path)
    await again.record(rec("auditor-3", "read_child", child_ref="C-1"))
    again.close()
    assert path.read_text().splitlines()[:2] == lines
    assert len(path.read_text().splitlines()) == 3


def test_concurrent_writers_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sinks = [JsonlAuditSink(path, fsync=False) for _ in range(4)]

    def write(sink: JsonlAuditSink, n: int) -> None:
        for i in range(100):
            sink.record_sync(rec(f"writer-{n}", episode_id=f"EP-{i}", child_ref="C" * 60))

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(sinks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = list(JsonlAuditSink(path).read())
    assert len(records) == 400
    assert {r.who.subject for r in records} == {f"writer-{n}" for n in range(4)}
    # Four writers (as four processes would) extend one chain, never fork it.
    assert verify(path.open("rb")).ok


async def test_who_looked_at_a_child_includes_reads_of_its_episodes(tmp_path: Path) -> None:
    sink = JsonlAuditSink(tmp_path / "audit.jsonl", fsync=False)
    await sink.record(rec("system-cad", "event_accepted", episode_id="EP-1", child_ref="C-1"))
    await sink.record(rec("insp-2", "read_episode", episode_id="EP-1"))  # child not yet known
    await sink.record(rec("auditor-3", "decode_payloads", episode_id="EP-1", child_ref="C-1"))
    await sink.record(rec("sgt-4", "read_child", child_ref="C-2"))
    await sink.record(rec("sgt-5", "read_episode", episode_id="EP-9"))

    looked = sink.for_child("C-1")
    assert [r.who.subject for r in looked] == ["system-cad", "insp-2", "auditor-3"]
    assert [r.who.subject for r in sink.for_child("C-2")] == ["sgt-4"]
    assert [r.who.subject for r in sink.for_episode("EP-9")] == ["sgt-5"]


def test_a_torn_line_is_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlAuditSink(path)
    sink.record_sync(rec("a", child_ref="C-1"))
    with path.open("ab") as f:
        f.write(b'{"prev":"00", "at": "2026-11-01T00:00:00Z", "who": {"subj')  # crash mid-write
    assert [r.who.subject for r in sink.for_child("C-1")] == ["a"]
    assert sink.skipped == 1
    # A record written after the crash starts a line of its own; verify names the torn line.
    JsonlAuditSink(path).record_sync(rec("b", child_ref="C-1"))
    assert [r.who.subject for r in sink.for_child("C-1")] == ["a", "b"]
    assert verify(path.open("rb")).broken_line == 2


def test_detail_never_carries_personal_data() -> None:
    record = AuditRecord.now(
        subject="s",
        role="auditor",
        action="decode_payloads",
        detail={"payloads": 3, "name": NAME, "note": f"name={NAME!r}"},
    )
    assert record.detail["payloads"] == 3
    assert record.detail["name"] == REDACTED
    assert NAME not in record.to_json()


def test_sink_selection(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    sink = audit_sink(settings, env={})
    assert isinstance(sink, JsonlAuditSink) and sink.fsync
    assert sink.path == tmp_path / "audit.jsonl"
    relaxed = audit_sink(settings, env={"MISPERS_AUDIT_FSYNC": "never"})
    assert isinstance(relaxed, JsonlAuditSink) and not relaxed.fsync
    with pytest.raises(ConfigError, match="MISPERS_AUDIT_FSYNC"):
        audit_sink(settings, env={"MISPERS_AUDIT_FSYNC": "sometimes"})
    custom = audit_sink(settings, env={"MISPERS_AUDIT_SINK": f"{__name__}:memory_sink"})
    assert isinstance(custom, MemoryAuditSink)
    with pytest.raises(ConfigError, match="MISPERS_AUDIT_SINK"):
        audit_sink(settings, env={"MISPERS_AUDIT_SINK": "no.such.module:f"})
    assert isinstance(MemoryAuditSink(), AuditSink)


def memory_sink(settings: Settings) -> AuditSink:
    return MemoryAuditSink()


async def test_the_memory_sink_keeps_the_same_chain(tmp_path: Path) -> None:
    memory, file = MemoryAuditSink(), JsonlAuditSink(tmp_path / "audit.jsonl", fsync=False)
    entries = [rec(f"s-{n}", episode_id=f"EP-{n}") for n in range(5)]
    heads = [(await memory.record(e), await file.record(e)) for e in entries]
    assert all(a == b for a, b in heads)
    assert list(memory.lines()) == list(file.lines())
    assert verify(memory.lines()).head == heads[-1][0]
    assert [r.hash for r in memory.records] == [h for h, _ in heads]


def test_a_sink_without_the_chain_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lines"):
        audit_sink(Settings(data_dir=tmp_path), env={"MISPERS_AUDIT_SINK": f"{__name__}:unchained"})


class _Unchained:
    async def record(self, entry: AuditRecord) -> None:
        return None


def unchained(settings: Settings) -> object:
    return _Unchained()


async def test_concurrent_callers_of_one_sink_share_fsyncs_and_keep_one_chain(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlAuditSink(path, fsync=True)
    hashes = await asyncio.gather(*(sink.record(rec(f"s-{n}")) for n in range(200)))
    sink.close()
    verdict = verify(path.open("rb"))
    assert verdict.ok and verdict.lines == 200
    stored = [json.loads(line)["hash"] for line in path.read_text().splitlines()]
    assert sorted(stored) == sorted(hashes)  # each caller got its own line's hash


async def test_a_sink_that_cannot_write_raises_for_every_waiting_caller(tmp_path: Path) -> None:
    (tmp_path / "audit.jsonl").mkdir()  # the disk will not take the file
    sink = JsonlAuditSink(tmp_path / "audit.jsonl")
    outcomes = await asyncio.gather(
        *(sink.record(rec(f"s-{n}")) for n in range(10)), return_exceptions=True
    )
    assert all(isinstance(o, OSError) for o in outcomes)
