"""The import rules that keep the layers readable, checked on the source (every import, including
those inside functions): a reader who follows an import never walks in a circle or into the
test suite."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at any depth, as dotted names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def sources(where: str) -> list[Path]:
    target = ROOT / where
    return [target] if target.is_file() else sorted(target.rglob("*.py"))


def offenders(where: str, banned: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources(where)
        for name in sorted(imports_of(path))
        if any(name == b or name.startswith(b + ".") for b in banned)
    ]


RULES = [
    # (where, what it must not import, why)
    ("mispers/errors.py", ("mispers",), "a leaf: anyone may raise its errors"),
    ("mispers/engine/connection.py", ("mispers.config",), "config keeps the connection"),
    ("mispers/domain", ("mispers.config", "mispers.engine", "mispers.api", "temporalio"), "pure"),
    ("mispers/security", ("mispers.api", "mispers.cli"), "the worker encrypts without HTTP"),
    ("activities", ("workflows",), "input models live in mispers.domain"),
    ("bench", ("tests",), "shared pieces live in testkit"),
    ("testkit", ("tests", "bench"), "both use it; it uses neither"),
    ("mispers", ("tests", "testkit", "bench"), "the service never imports test code"),
]


@pytest.mark.parametrize(("where", "banned", "why"), RULES, ids=[r[0] for r in RULES])
def test_layer_rule(where: str, banned: tuple[str, ...], why: str) -> None:
    assert sources(where), f"{where}: nothing to check"
    assert offenders(where, banned) == [], why


def test_the_rule_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from workflows.child_record import ChildRecordInput\n")
    assert "workflows.child_record" in imports_of(module)


def test_one_default_task_queue() -> None:
    """The default task queue is spelt once; everything else refers to the constant."""
    spelt = [
        str(path.relative_to(ROOT))
        for where in ("mispers", "workflows", "activities", "worker.py")
        for path in sources(where)
        for line in path.read_text(encoding="utf-8").splitlines()
        if "task_queue" in line.lower() and '"mispers"' in line
    ]
    assert spelt == ["mispers/domain/messages.py"]
