"""Render a Kustomize tree offline, for the manifest checks (no kubectl or kustomize here).

Implements the part of Kustomize that deploy/k8s uses and refuses anything else, so a manifest
change that needs more fails loudly here instead of being checked against a wrong rendering:
`resources` (files and directories), `namespace`, `labels` (without selectors), `images`,
`replicas`, `configMapGenerator` (files, literals; behavior create/merge/replace;
`disableNameSuffixHash`) with content-hash names and name-reference rewriting, and `patches`
holding JSON 6902 operations (add, remove, replace, test) with a kind/name target.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

GENERATED = "__generated__"  # internal marker on generated ConfigMaps: {"hash": bool}
SUPPORTED_KEYS = frozenset(
    {
        "apiVersion",
        "kind",
        "resources",
        "namespace",
        "labels",
        "images",
        "replicas",
        "configMapGenerator",
        "patches",
    }
)
CLUSTER_SCOPED = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass"})
WORKLOADS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job"})


class KustomizeError(Exception):
    pass


def build(directory: Path) -> list[Resource]:
    """The resources `kustomize build directory` would print, in a stable order."""
    resources = _render(directory)
    _finalize(resources)
    return resources


def load_documents(path: Path) -> list[Resource]:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise KustomizeError(f"{path}: not a Kubernetes object: {doc!r:.80}")
    return docs


def _render(directory: Path) -> list[Resource]:
    kfile = directory / "kustomization.yaml"
    if not kfile.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    spec = yaml.safe_load(kfile.read_text(encoding="utf-8")) or {}
    unknown = set(spec) - SUPPORTED_KEYS
    if unknown:
        raise KustomizeError(f"{kfile}: unsupported fields {sorted(unknown)}")
    resources: list[Resource] = []
    for entry in spec.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            resources.extend(_render(target))
        elif target.is_file():
            # Kustomize's default load restrictor: files only from within this directory.
            if directory.resolve() not in target.parents:
                raise KustomizeError(f"{kfile}: file {entry!r} is outside the kustomization root")
            resources.extend(load_documents(target))
        else:
            raise KustomizeError(f"{kfile}: resource {entry!r} not found")
    for generator in spec.get("configMapGenerator", []):
        _generate(directory, generator, resources)
    for patch in spec.get("patches", []):
        _patch(kfile, patch, resources)
    if "namespace" in spec:
        for res in resources:
            if res["kind"] not in CLUSTER_SCOPED:
                res.setdefault("metadata", {})["namespace"] = spec["namespace"]
    for label in spec.get("labels", []):
        _label(kfile, label, resources)
    for image in spec.get("images", []):
        _image(image, resources)
    for replica in spec.get("replicas", []):
        matched = [r for r in resources if r["kind"] in WORKLOADS and _name(r) == replica["name"]]
        if not matched:
            raise KustomizeError(f"{kfile}: replicas for unknown workload {replica['name']!r}")
        for res in matched:
            res["spec"]["replicas"] = int(replica["count"])
    _check_unique(kfile, resources)
    return resources


def _name(res: Resource) -> str:
    return str(res.get("metadata", {}).get("name", ""))


def _check_unique(kfile: Path, resources: list[Resource]) -> None:
    seen: set[tuple[str, str]] = set()
    for res in resources:
        key = (res["kind"], _name(res))
        if key in seen:
            raise KustomizeError(f"{kfile}: {key[0]}/{key[1]} is defined twice")
        seen.add(key)


def _generate(directory: Path, generator: dict[str, Any], resources: list[Resource]) -> None:
    unknown = set(generator) - {"name", "behavior", "files", "literals", "options"}
    if unknown:
        raise KustomizeError(f"configMapGenerator {generator.get('name')}: unsupported {unknown}")
    name = generator["name"]
    data: dict[str, str] = {}
    for item in generator.get("files", []):
        key, _, rel = item.partition("=") if "=" in item else (Path(item).name, "", item)
        path = (directory / rel).resolve()
        if directory.resolve() not in path.parents:
            raise KustomizeError(f"{name}: {rel} is outside the kustomization directory")
        data[key] = path.read_text(encoding="utf-8")
    for literal in generator.get("literals", []):
        key, sep, value = literal.partition("=")
        if not sep or not key:
            raise KustomizeError(f"{name}: literal {literal!r} is not KEY=VALUE")
        data[key] = value
    options = generator.get("options", {})
    hashed = not options.get("disableNameSuffixHash", False)
    behavior = generator.get("behavior", "create")
    existing = [r for r in resources if r["kind"] == "ConfigMap" and _name(r) == name]
    if behavior == "create":
        if existing:
            raise KustomizeError(f"ConfigMap {name} already exists: use behavior merge/replace")
        resources.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name},
                "data": data,
                GENERATED: {"hash": hashed},
            }
        )
        return
    if not existing or GENERATED not in existing[0]:
        raise KustomizeError(f"ConfigMap {name}: behavior {behavior} needs a generated base")
    target = existing[0]
    if behavior == "merge":
        target["data"] = {**target.get("data", {}), **data}
    elif behavior == "replace":
        target["data"] = data
    else:
        raise KustomizeError(f"ConfigMap {name}: unknown behavior {behavior!r}")
    if "options" in generator:
        target[GENERATED] = {"hash": hashed}


def _patch(kfile: Path, patch: dict[str, Any], resources: list[Resource]) -> None:
    target = patch.get("target") or {}
    if set(target) - {"kind", "name"} or "patch" not in patch or "path" in patch:
        raise KustomizeError(f"{kfile}: only inline JSON 6902 patches with a kind/name target")
    operations = yaml.safe_load(patch["patch"])
    if not isinstance(operations, list):
        raise KustomizeError(f"{kfile}: strategic-merge patches are not supported here")
    matched = [
        r
        for r in resources
        if r["kind"] == target.get("kind", r["kind"]) and _name(r) == target.get("name", _name(r))
    ]
    if not matched:
        raise KustomizeError(f"{kfile}: patch target {target} matches nothing")
    for res in matched:
        for op in operations:
            _apply_op(kfile, res, op)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"bad JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, list):
            doc = doc[int(part)]
        elif isinstance(doc, dict):
            doc = doc[part]
        else:
            raise KeyError(part)
    return doc


def _apply_op(kfile: Path, res: Resource, op: dict[str, Any]) -> None:
    parts = _pointer(op["path"])
    where = f"{kfile}: {op['op']} {op['path']} on {res['kind']}/{_name(res)}"
    try:
        parent = _walk(res, parts[:-1])
        last = parts[-1]
        if op["op"] == "test":
            actual = _walk(res, parts)
            if actual != op["value"]:
                raise KustomizeError(f"{where}: test failed, found {actual!r}")
        elif op["op"] == "remove":
            if isinstance(parent, list):
                parent.pop(int(last))
            else:
                del parent[last]
        elif op["op"] in ("add", "replace"):
            value = copy.deepcopy(op["value"])
            if isinstance(parent, list):
                if last == "-":
                    parent.append(value)
                elif op["op"] == "add":
                    parent.insert(int(last), value)
                else:
                    parent[int(last)] = value
            else:
                if op["op"] == "replace" and last not in parent:
                    raise KustomizeError(f"{where}: nothing to replace")
                parent[last] = value
        else:
            raise KustomizeError(f"{where}: unsupported operation")
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise KustomizeError(f"{where}: path not found ({exc})") from None


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


def _label(kfile: Path, label: dict[str, Any], resources: list[Resource]) -> None:
    if label.get("includeSelectors"):
        raise KustomizeError(f"{kfile}: labels with includeSelectors are not supported here")
    pairs = label.get("pairs", {})
    for res in resources:
        res.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if label.get("includeTemplates") and res["kind"] in WORKLOADS:
            template = res["spec"]["template"].setdefault("metadata", {})
            template.setdefault("labels", {}).update(pairs)


def _image(image: dict[str, Any], resources: list[Resource]) -> None:
    for res in resources:
        for container in containers(res):
            ref = container.get("image", "")
            base = ref.split("@")[0].rsplit(":", 1)[0] if ":" in ref.split("/")[-1] else ref
            if base != image["name"]:
                continue
            new = image.get("newName", base)
            if "digest" in image:
                container["image"] = f"{new}@{image['digest']}"
            elif "newTag" in image:
                container["image"] = f"{new}:{image['newTag']}"
            else:
                container["image"] = new


def _finalize(resources: list[Resource]) -> None:
    """Hash-suffix generated ConfigMaps and rewrite every reference to them."""
    renames: dict[str, str] = {}
    for res in resources:
        marker = res.pop(GENERATED, None)
        if marker and marker["hash"]:
            digest = hashlib.sha256(
                json.dumps(res.get("data", {}), sort_keys=True).encode()
            ).hexdigest()
            new = f"{_name(res)}-{digest[:10]}"
            renames[_name(res)] = new
            res["metadata"]["name"] = new
    for res in resources:
        spec = pod_spec(res)
        if spec is None:
            continue
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                cm = volume["configMap"]
                cm["name"] = renames.get(cm["name"], cm["name"])
        for container in containers(res):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    ref = source["configMapRef"]
                    ref["name"] = renames.get(ref["name"], ref["name"])
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    ref["name"] = renames.get(ref["name"], ref["name"])
    resources.sort(key=lambda r: (r["kind"], _name(r)))
