"""The ban on clocks, randomness, environment and I/O in rules and workflow code
(ruff-deterministic.toml) catches a planted call: ruff checks a copy of a real file, planted,
as if it stood at the real file's place (`--stdin-filename`), so the folder's own config
applies and the worktree is left alone."""

from __future__ import annotations

import ast
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


def ruff_as(path: str, source: str, *config: str) -> subprocess.CompletedProcess[str]:
    ruff = str(RUFF) if RUFF.exists() else "ruff"
    return subprocess.run(
        [
            ruff,
            "check",
            "--no-cache",
            "--output-format=concise",
            *config,
            "--stdin-filename",
            path,
            "-",
        ],
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


# Imported with its package by workflow code and never called by it: the workflow receives its
# policy pinned in its input, the loader reads files only in the API and the CLI.
IMPORTED_NOT_CALLED = {"mispers/policy/loader.py"}
REPLAYED_FOLDERS = ("mispers/domain/", "workflows/")


def _module_file(module: str) -> Path | None:
    base = repo_root().joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _mispers_imports(path: Path) -> set[Path]:
    """The files of the `mispers` modules (and their packages) a file imports."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    files: set[Path] = set()
    for module in modules:
        parts = module.split(".")
        if parts[0] != "mispers":
            continue
        for depth in range(1, len(parts) + 1):
            found = _module_file(".".join(parts[:depth]))
            if found is not None:
                files.add(found)
    return files


def workflow_callees() -> set[str]:
    """Every file of `mispers` that workflow code reaches by import, outside the folders whose
    own ruff.toml applies the ban. The worker runs workflows without the SDK's sandbox, so the
    ban, not the sandbox, is what keeps these deterministic."""
    root = repo_root()
    todo = sorted((root / "workflows").glob("*.py"))
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(_mispers_imports(path) - seen)
    relative = {p.relative_to(root).as_posix() for p in seen}
    return {p for p in relative if not p.startswith(REPLAYED_FOLDERS)} - IMPORTED_NOT_CALLED


def ruff_banned(path: str, source: str) -> subprocess.CompletedProcess[str]:
    """`ruff_as` with the ban's own config, for a file outside the banned folders."""
    return ruff_as(path, source, "--config", "ruff-deterministic.toml")


def test_the_workflows_reach_the_rules_record_and_policy_model() -> None:
    """The walk finds what the workflows call: it could miss a module and pass vacuously."""
    callees = workflow_callees()
    assert {
        "mispers/analytics/record.py",
        "mispers/engine/search_attributes.py",
        "mispers/policy/model.py",
    } <= callees


@pytest.mark.parametrize("path", sorted(workflow_callees()))
def test_every_module_workflow_code_reaches_passes_the_ban(path: str) -> None:
    result = ruff_banned(path, (repo_root() / path).read_text())
    assert result.returncode == 0, result.stdout


def test_a_planted_clock_in_a_reached_module_fails_the_ban() -> None:
    path = "mispers/analytics/record.py"
    result = ruff_banned(path, planted(path, PLANTS["clock"]))
    assert result.returncode == 1
    assert "TID251" in result.stdout, result.stdout
