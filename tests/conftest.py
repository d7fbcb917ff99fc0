"""Shared fixtures: a real Temporal dev server and a real time-skipping test server, both from
pip-installed binaries (nothing downloads), started once per session."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from mispers.engine.client import data_converter
from mispers.engine.embedded import TUNING_ARGS, venv_binary
from mispers.engine.search_attributes import ALL as SEARCH_ATTRIBUTES
from mispers.policy import PinnedPolicy, Policy, load_policy
from testkit.waiting import eventually as eventually  # tests import it from here

T = TypeVar("T")
STARTUP = timedelta(seconds=30)


async def _twice(start: Callable[[], Awaitable[T]]) -> T:
    """The SDK's server fixtures occasionally miss their start-up window: retry once."""
    try:
        return await start()
    except Exception:
        return await start()


async def start_dev_server(db: Path, converter: DataConverter) -> WorkflowEnvironment:
    """A dev server from the venv's `temporal` binary, flags as `make run`, on the SQLite `db`."""

    async def start() -> WorkflowEnvironment:
        return await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(venv_binary("temporal")),
            dev_server_database_filename=str(db),
            dev_server_extra_args=list(TUNING_ARGS),
            dev_server_startup_timeout=STARTUP,
            search_attributes=SEARCH_ATTRIBUTES,
            data_converter=converter,
        )

    return await _twice(start)


async def run_command(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """Run a command from the repository root; its exit code and its output (stderr merged)."""
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=repo_root(),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


@pytest.fixture(scope="session")
async def dev_env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WorkflowEnvironment]:
    db = tmp_path_factory.mktemp("temporal") / "temporal.db"
    env = await start_dev_server(db, data_converter())
    async with env:
        yield env


@pytest.fixture(scope="session")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    async def start() -> WorkflowEnvironment:
        return await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=str(venv_binary("temporal-test-server")),
            test_server_startup_timeout=STARTUP,
            data_converter=data_converter(),
        )

    env = await _twice(start)
    async with env:
        await register_search_attributes(env.client)
        yield env


async def register_search_attributes(client: Client) -> None:
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={
                key.name: IndexedValueType.ValueType(key.indexed_value_type)
                for key in SEARCH_ATTRIBUTES
            },
        )
    )


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy()


@pytest.fixture(scope="session")
def pinned(policy: Policy) -> PinnedPolicy:
    return PinnedPolicy.pin(policy)


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


os.environ.setdefault("MISPERS_LOG_LEVEL", "warning")
