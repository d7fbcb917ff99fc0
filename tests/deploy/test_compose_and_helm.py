"""deploy/docker-compose.yml and deploy/helm/temporal-values.yaml: they parse, and they say what
Mispers needs (commands, settings the service accepts, search attributes, retention)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from mispers.config import load_settings
from mispers.engine.search_attributes import CLI_TYPES
from mispers.policy import load_policy
from tests.conftest import repo_root

ROOT = repo_root()
DEPLOY = ROOT / "deploy"


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(
        (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    )
    return doc


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default}, with every variable unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def retention_days(text: str) -> float:
    match = re.fullmatch(r"(\d+)([hd])", text)
    assert match, f"retention {text!r}: expected <n>h or <n>d"
    return int(match.group(1)) / (24 if match.group(2) == "h" else 1)


def longest_repeat_window() -> int:
    return max(load_policy().repeat.windows_days)


def test_compose_services_and_commands() -> None:
    services = compose()["services"]
    assert {"postgresql", "temporal", "temporal-ui", "search-attributes", "worker", "api"} <= set(
        services
    )
    assert services["worker"]["command"] == ["worker"]
    assert services["api"]["command"] == ["api"]
    for name in ("worker", "api", "search-attributes", "keys"):
        build = services[name]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
        assert services[name]["read_only"] is True
    for name, service in services.items():
        image = service.get("image", "")
        assert image and not image.endswith(":latest") and ":" in image, (name, image)
    assert services["worker"]["healthcheck"]["test"][1:3] == ["mispers", "worker-health"]
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    grace = int(services["worker"]["stop_grace_period"].rstrip("s"))
    assert grace > 30  # longer than the alert delivery's start-to-close
    for name in ("worker", "api"):
        deps = services[name]["depends_on"]
        assert deps["search-attributes"]["condition"] == "service_completed_successfully"
        assert deps["keys"]["condition"] == "service_completed_successfully"


def test_compose_registers_the_search_attributes_with_the_shared_script() -> None:
    service = compose()["services"]["search-attributes"]
    assert dict(arg.split("=", 1) for arg in service["command"]) == CLI_TYPES
    (mount,) = service["volumes"]
    host, container, _ = mount.split(":")
    script = Path(service["entrypoint"][-1])
    assert script.parent == Path(container)
    assert (DEPLOY / host / script.name).is_file()


def test_compose_temporal_keeps_a_year_and_is_what_mispers_connects_to() -> None:
    services = compose()["services"]
    temporal = services["temporal"]["environment"]
    assert temporal["DB"] == "postgres12"
    assert retention_days(temporal["DEFAULT_NAMESPACE_RETENTION"]) >= longest_repeat_window()
    for name in ("worker", "api", "search-attributes", "keys"):
        env = {k: interpolate(str(v)) for k, v in services[name]["environment"].items()}
        assert env["MISPERS_TEMPORAL_NAMESPACE"] == temporal["DEFAULT_NAMESPACE"]
        host = env["MISPERS_TEMPORAL_ADDRESS"].split(":")[0]
        assert host in services
        settings = load_settings(env)  # what the container will accept at start
        assert settings.data_dir == Path("/var/lib/mispers")
    api_env = services["api"]["environment"]
    assert api_env["MISPERS_HTTP_HOST"] == "0.0.0.0"
    assert (
        f"{api_env['MISPERS_HTTP_PORT']}:{api_env['MISPERS_HTTP_PORT']}" in services["api"]["ports"]
    )


def helm_values() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(
        (DEPLOY / "helm" / "temporal-values.yaml").read_text(encoding="utf-8")
    )
    return doc


def test_helm_values_postgresql_persistence_and_elasticsearch_visibility() -> None:
    config = helm_values()["server"]["config"]
    persistence = config["persistence"]
    stores = persistence["datastores"]
    default = stores[persistence["defaultStore"]]
    visibility = stores[persistence["visibilityStore"]]
    assert default["sql"]["pluginName"].startswith("postgres")
    assert "password" not in default["sql"] and default["sql"]["existingSecret"]
    assert visibility["elasticsearch"]["version"] in ("v7", "v8")
    assert "password" not in visibility["elasticsearch"]
    assert persistence["numHistoryShards"] >= 512


def test_helm_namespace_retention_covers_the_repeat_windows() -> None:
    namespaces = helm_values()["server"]["config"]["namespaces"]
    assert namespaces["create"] is True
    (mispers,) = [n for n in namespaces["namespace"] if n["name"] == "mispers"]
    assert retention_days(mispers["retention"]) >= longest_repeat_window()


def test_helm_frontend_requires_client_certificates() -> None:
    values = helm_values()
    frontend = values["server"]["config"]["tls"]["frontend"]["server"]
    assert frontend["requireClientAuth"] is True
    mounted = {m["mountPath"] for m in values["server"]["additionalVolumeMounts"]}
    for path in [frontend["certFile"], frontend["keyFile"], *frontend["clientCaFiles"]]:
        assert any(path.startswith(root + "/") for root in mounted), path
