"""The repository stands alone and speaks of the product: no file points at documents kept
outside it, and none tells how the product was built by citing work-item numbers. Every tracked
text file is read, recorded histories excepted (they are released artefacts, never edited)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIPPED_DIRS = {".git", ".venv", ".mispers", "__pycache__", ".mypy_cache", ".ruff_cache"}

# Spelt in pieces so that this file does not match itself.
FORBIDDEN = {
    "a work-item number": re.compile(r"\bissues?\s+#?\d+|\bissue\s*#\d+", re.IGNORECASE),
    "a path outside the repository": re.compile(r"\.\./" + "shared" + r"|\bshared" + "/"),
    "an outside design document": re.compile(r"\b" + "DESIGN" + r"\.md\b", re.IGNORECASE),
    "an outside domain document": re.compile(r"\b" + "DOMAIN" + r"\.md\b", re.IGNORECASE),
}


def tracked_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout.decode()
        paths = [ROOT / name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk the tree
        paths = [
            p
            for p in ROOT.rglob("*")
            if p.is_file() and not SKIPPED_DIRS & set(p.relative_to(ROOT).parts)
        ]
    return [p for p in paths if p.is_file() and "histories" not in p.relative_to(ROOT).parts]


def offences(paths: list[Path], root: Path = ROOT) -> list[str]:
    found = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        for n, line in enumerate(text.splitlines(), 1):
            for what, pattern in FORBIDDEN.items():
                if pattern.search(line):
                    found.append(f"{path.relative_to(root)}:{n}: {what}: {line.strip()[:80]}")
    return found


def test_no_tracked_file_points_outside_or_cites_work_items() -> None:
    files = tracked_files()
    assert len(files) > 100
    assert offences(files) == []


@pytest.mark.parametrize(
    "line",
    [
        "# as decided in issue" + " 7",
        '"""Scale-out drill (Issue' + ' #6)."""',
        "see issues" + " 4 and 5",
        "The full contract is `../" + "shared" + "/DESIGN" + ".md`",
        "rules in " + "DOMAIN" + ".md",
        "(" + "design" + ".md)",
    ],
)
def test_the_check_catches_a_planted_line(tmp_path: Path, line: str) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(f"x = 1\n{line}\n", encoding="utf-8")
    found = offences([planted], root=tmp_path)
    assert len(found) >= 1 and all(o.startswith("planted.py:2:") for o in found)


def test_ordinary_words_pass(tmp_path: Path) -> None:
    fine = tmp_path / "fine.md"
    fine.write_text(
        "A shared harness; the domain rules; a design choice; issued 4 tokens; an issue with it.\n",
        encoding="utf-8",
    )
    assert offences([fine], root=tmp_path) == []
