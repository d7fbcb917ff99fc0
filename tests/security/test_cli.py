"""`mispers keys init|list|rotate` and `mispers audit --child`."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from mispers.cli import app
from mispers.security.audit import AuditRecord, JsonlAuditSink
from mispers.security.keyring import KeyRing

runner = CliRunner()


def env(data_dir: Path, **more: str) -> dict[str, str]:
    return {"MISPERS_DATA_DIR": str(data_dir), "MISPERS_KEYS": "", **more}


def test_keys_init_list_rotate(tmp_path: Path) -> None:
    e = env(tmp_path)
    result = runner.invoke(app, ["keys", "list"], env=e)
    assert result.exit_code == 1  # the CLI never mints a ring implicitly for a listing

    result = runner.invoke(app, ["keys", "init"], env=e)
    assert result.exit_code == 0, result.output
    ring = KeyRing.load(tmp_path / "keys.json")
    assert ring.active.id in result.output

    assert runner.invoke(app, ["keys", "init"], env=e).exit_code == 1  # never overwrites

    result = runner.invoke(app, ["keys", "rotate"], env=e)
    assert result.exit_code == 0, result.output
    rotated = KeyRing.load(tmp_path / "keys.json")
    assert len(rotated.ids) == 2 and rotated.ids[0] == ring.active.id
    assert rotated.active.id in result.output

    result = runner.invoke(app, ["keys", "list"], env=e)
    assert result.exit_code == 0, result.output
    for key in rotated.keys:
        assert key.id in result.output
        assert key.fingerprint in result.output
        assert key.secret.hex() not in result.output
    assert "encrypt + decrypt" in result.output


def test_keys_on_a_loose_ring_fail_with_the_reason(tmp_path: Path) -> None:
    path = KeyRing.create(tmp_path / "keys.json").path
    assert path is not None
    path.chmod(0o644)
    result = runner.invoke(app, ["keys", "rotate"], env=env(tmp_path))
    assert result.exit_code == 1
    assert "chmod 600" in result.output


def test_audit_lists_who_looked_at_a_child(tmp_path: Path) -> None:
    sink = JsonlAuditSink(tmp_path / "audit.jsonl")

    for subject, action, target in [
        ("cad", "event_accepted", {"episode_id": "EP-1", "child_ref": "C-77"}),
        ("insp-harlow", "read_episode", {"episode_id": "EP-1"}),
        ("auditor-9", "read_child", {"child_ref": "C-77"}),
        ("sgt-other", "read_child", {"child_ref": "C-78"}),
    ]:
        sink.record_sync(
            AuditRecord.now(subject=subject, role="supervisor", action=action, **target)  # type: ignore[arg-type]
        )
    result = runner.invoke(app, ["audit", "--child", "C-77", "--json"], env=env(tmp_path))
    assert result.exit_code == 0, result.output
    subjects = [
        AuditRecord.model_validate_json(line).who.subject for line in result.output.splitlines()
    ]
    assert subjects == ["cad", "insp-harlow", "auditor-9"]

    result = runner.invoke(app, ["audit", "--child", "C-77"], env=env(tmp_path))
    assert result.exit_code == 0
    assert "insp-harlow" in result.output and "sgt-other" not in result.output
    assert "3 record(s)" in result.output

    assert runner.invoke(app, ["audit"], env=env(tmp_path)).exit_code == 2
