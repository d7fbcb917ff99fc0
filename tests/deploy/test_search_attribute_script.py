"""deploy/k8s/base/scripts/register-search-attributes.sh (the Kubernetes Job and the compose
service) run for real with the pinned `temporal` CLI against the dev server: it registers every
attribute, a second run changes nothing and succeeds, and a type conflict fails loudly."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from mispers.engine.embedded import venv_binary
from mispers.engine.search_attributes import CLI_TYPES
from tests.conftest import repo_root

pytestmark = pytest.mark.integration

SCRIPT = repo_root() / "deploy" / "k8s" / "base" / "scripts" / "register-search-attributes.sh"


def run_script(
    address: str, namespace: str, args: list[str], home: Path
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{venv_binary('temporal').parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "MISPERS_TEMPORAL_ADDRESS": address,
        "MISPERS_TEMPORAL_NAMESPACE": namespace,
        "WAIT_TRIES": "5",
    }
    return subprocess.run(
        ["/bin/sh", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120
    )


def temporal(address: str, *args: str) -> None:
    subprocess.run(
        [str(venv_binary("temporal")), *args, "--address", address],
        check=True,
        capture_output=True,
        timeout=60,
    )


async def registered(env: WorkflowEnvironment, namespace: str) -> dict[str, str]:
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    answer = await env.client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    names = {
        1: "Text",
        2: "Keyword",
        3: "Int",
        4: "Double",
        5: "Bool",
        6: "Datetime",
        7: "KeywordList",
    }
    return {k: names[int(v)] for k, v in answer.custom_attributes.items()}


async def test_registers_idempotently_and_refuses_a_conflict(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    address = dev_env.client.service_client.config.target_host
    namespace = f"sa-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(
        temporal, address, "operator", "namespace", "create", "--namespace", namespace
    )
    args = [f"{name}={kind}" for name, kind in CLI_TYPES.items()]

    first = await asyncio.to_thread(run_script, address, namespace, args, tmp_path)
    assert first.returncode == 0, first.stderr
    assert await registered(dev_env, namespace) == CLI_TYPES
    again = await asyncio.to_thread(run_script, address, namespace, args, tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("ok ") == len(CLI_TYPES)

    conflict = await asyncio.to_thread(
        run_script, address, namespace, ["OverdueCount=Keyword"], tmp_path
    )
    assert conflict.returncode != 0
    assert "OverdueCount" in conflict.stderr and "Int" in conflict.stderr
    assert (await registered(dev_env, namespace))["OverdueCount"] == "Int"


async def test_missing_address_and_unknown_namespace_fail(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    no_address = subprocess.run(  # noqa: ASYNC221 - fails at once, no server involved
        ["/bin/sh", str(SCRIPT), "A=Int"],
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert no_address.returncode != 0 and "MISPERS_TEMPORAL_ADDRESS" in no_address.stderr
    address = dev_env.client.service_client.config.target_host
    missing = await asyncio.to_thread(run_script, address, "no-such-namespace", ["A=Int"], tmp_path)
    assert missing.returncode == 1 and "no-such-namespace" in missing.stderr
