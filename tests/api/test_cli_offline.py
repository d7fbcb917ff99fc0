"""The HTTP side of the CLI without a server: tokens, reading event files, batching."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mispers.api.auth import load_secret, verify_token
from mispers.api.ingest import MAX_BODY_BYTES
from mispers.cli import app
from mispers.cli.events import SEND_BATCH_EVENTS, batches, parse_ttl, read_events
from mispers.config import Settings
from mispers.domain.types import Rank, Role
from testkit.receivers import free_port

runner = CliRunner()


def test_token_prints_a_token_the_service_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MISPERS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MISPERS_JWT_SECRET", raising=False)
    result = runner.invoke(app, ["token", "--role", "officer", "--subject", "PC-9", "--ttl", "90m"])
    assert result.exit_code == 0, result.output
    actor = verify_token(load_secret(Settings(data_dir=tmp_path)), result.output.strip())
    assert (actor.subject, actor.role) == ("PC-9", Role.OFFICER)


def test_token_carries_the_rank_given_or_the_roles_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MISPERS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MISPERS_JWT_SECRET", raising=False)
    secret = load_secret(Settings(data_dir=tmp_path))
    for args, rank in (
        (["--role", "supervisor", "--subject", "INSP-3", "--rank", "inspector"], Rank.INSPECTOR),
        (["--role", "supervisor", "--subject", "SGT-1"], Rank.SERGEANT),
        (["--role", "officer", "--subject", "PC-1"], Rank.OFFICER),
        (["--role", "system", "--subject", "cad"], None),
    ):
        result = runner.invoke(app, ["token", *args])
        assert result.exit_code == 0, result.output
        assert verify_token(secret, result.output.strip()).rank == rank
    refused = runner.invoke(
        app, ["token", "--role", "auditor", "--subject", "A", "--rank", "sergeant"]
    )
    assert refused.exit_code != 0
    assert "carries no rank" in refused.output


def test_token_refuses_unknown_roles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISPERS_DATA_DIR", str(tmp_path))
    result = runner.invoke(app, ["token", "--role", "chief", "--subject", "x"])
    assert result.exit_code != 0


@pytest.mark.parametrize(
    ("text", "seconds"), [("3600", 3600), ("90m", 5400), ("12h", 43200), ("7d", 604800)]
)
def test_ttl_spellings(text: str, seconds: int) -> None:
    assert parse_ttl(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["0", "-5", "soon", "5y"])
def test_bad_ttls(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_ttl(text)


def test_read_events_json_array_object_and_ndjson(tmp_path: Path) -> None:
    events = [{"id": "1"}, {"id": "2"}]
    array = tmp_path / "a.json"
    array.write_text(json.dumps(events))
    single = tmp_path / "s.json"
    single.write_text(json.dumps(events[0], indent=2))
    ndjson = tmp_path / "e.ndjson"
    ndjson.write_text("\n".join(json.dumps(e) for e in events) + "\n\n")
    assert read_events(array) == events
    assert read_events(single) == events[:1]
    assert read_events(ndjson) == events


def test_read_events_names_the_bad_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"id": "1"}\n{oops\n')
    with pytest.raises(typer.Exit):
        read_events(bad)


def test_batches_respect_count_and_size() -> None:
    small = [{"id": str(i)} for i in range(SEND_BATCH_EVENTS * 2 + 1)]
    assert [len(b) for b in batches(small)] == [SEND_BATCH_EVENTS, SEND_BATCH_EVENTS, 1]
    big = [{"pad": "x" * (MAX_BODY_BYTES // 5)} for _ in range(5)]
    assert all(len(json.dumps(b)) < MAX_BODY_BYTES for b in batches(big))
    assert sum(len(b) for b in batches(big)) == 5


def test_the_api_does_not_start_with_a_misconfigured_audit(tmp_path: Path) -> None:
    """Run as its own process: `mispers api` configures logging for the process it runs in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISPERS_")}
    env |= {"MISPERS_DATA_DIR": str(tmp_path), "MISPERS_AUDIT_FSYNC": "sometimes"}
    env["MISPERS_HTTP_PORT"] = str(free_port())
    done = subprocess.run(
        [sys.executable, "-m", "mispers", "api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "MISPERS_AUDIT_FSYNC" in done.stdout + done.stderr
