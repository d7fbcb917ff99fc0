"""The ban on clocks, randomness, environment and I/O in rules and workflow code
(ruff-deterministic.toml) catches a planted call: ruff checks a copy of a real file, planted,
as if it stood at the real file's place (`--stdin-filename`), so the folder's own config
applies and the worktree is left alone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import repo_root

RUFF = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "ruff"
PLANTS = {
    "clock": "from datetime import datetime\n\nSTAMP = datetime.now()\n",
    "clock via module": "import datetime as dt\n\nSTAMP = dt.datetime.utcnow()\n",
    "randomness": "import random\n\nPICK = random.random()\n",
    "environment": "import os\n\nLEVEL = os.environ.get('LEVEL')\n",
    "file": "TEXT = open('policy.toml').read()\n",
    "network": "import httpx\n\nCLIENT = httpx.Client()\n",
}


def ruff_as(path: str, source: str) -> subprocess.CompletedProcess[str]:
    ruff = str(RUFF) if RUFF.exists() else "ruff"
    return subprocess.run(
        [ruff, "check", "--no-cache", "--output-format=concise", "--stdin-filename", path, "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=repo_root(),
        check=False,
    )


def planted(path: str, plant: str) -> str:
    """The real file with the plant appended (imports after code are allowed for the check)."""
    return (repo_root() / path).read_text() + "\n" + plant


@pytest.mark.parametrize("path", ["mispers/domain/risk.py", "workflows/episode.py"])
def test_the_real_files_pass(path: str) -> None:
    result = ruff_as(path, (repo_root() / path).read_text())
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("path", ["mispers/domain/risk.py", "workflows/child_record.py"])
@pytest.mark.parametrize("kind", list(PLANTS))
def test_a_planted_call_fails_the_ban(path: str, kind: str) -> None:
    result = ruff_as(path, planted(path, PLANTS[kind]))
    assert result.returncode == 1
    banned = [line for line in result.stdout.splitlines() if "TID251" in line or "PTH123" in line]
    assert banned, result.stdout


def test_activities_may_do_io() -> None:
    """The ban is the rules' and workflows' only: the same plant in an activity is no TID251."""
    result = ruff_as("activities/locations.py", planted("activities/locations.py", PLANTS["clock"]))
    assert "TID251" not in result.stdout
