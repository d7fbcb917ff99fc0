"""Fixtures of the API tests: an app with no engine behind it (unit tests), and the whole stack
over real sockets — dev server, worker, API under uvicorn — for the end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from mispers.api import create_app
from mispers.api.auth import load_secret, mint_token
from mispers.api.server import serve_api
from mispers.config import Settings
from mispers.domain.types import Role
from mispers.engine.client import connect
from mispers.security.keyring import open_ring
from testkit.receivers import free_port
from tests.conftest import eventually

# The scale of the "drill" API: 30 min deadlines become 1.5 s, so alerts happen within a test.
DRILL_TIME_SCALE = 1200.0


def tokens_for(settings: Settings) -> dict[Role, str]:
    secret = load_secret(settings)
    return {role: mint_token(secret, role, f"test-{role.value}") for role in Role}


@pytest.fixture
def offline_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose engine is unreachable: for what the API decides without Temporal."""
    monkeypatch.delenv("MISPERS_JWT_SECRET", raising=False)
    return Settings(data_dir=tmp_path, temporal_address="127.0.0.1:9")


@pytest.fixture
def offline_tokens(offline_settings: Settings) -> dict[Role, str]:
    return tokens_for(offline_settings)


@pytest.fixture
async def offline_client(offline_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(offline_settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


@dataclass(frozen=True)
class Stack:
    """A running API (and a drill API at DRILL_TIME_SCALE) in front of a real worker."""

    url: str
    drill_url: str
    settings: Settings
    tokens: dict[Role, str]

    def headers(self, role: Role = Role.SUPERVISOR) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[role]}"}


@contextlib.asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[str]:
    stop = asyncio.Event()
    task = asyncio.create_task(serve_api(settings, stop))
    url = f"http://127.0.0.1:{settings.http_port}"
    async with httpx.AsyncClient(base_url=url, timeout=5) as probe:

        async def health() -> int:
            if task.done():
                task.result()  # surfaces a start-up failure at once
            try:
                return (await probe.get("/healthz")).status_code
            except httpx.TransportError:
                return 0

        await eventually(health, lambda status: status == 200, within=30)
    try:
        yield url
    finally:
        stop.set()
        await task


@pytest.fixture(scope="session")
async def stack(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    from worker import build_worker

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("api-e2e"),
        http_port=free_port(),
        temporal_address=dev_env.client.service_client.config.target_host,
        task_queue=f"api-e2e-{uuid.uuid4().hex[:8]}",
    )
    open_ring(settings, create=True)  # an external server: the ring is never implicit
    client = await connect(settings)
    drill = dataclasses.replace(settings, http_port=free_port(), time_scale=DRILL_TIME_SCALE)
    async with (
        build_worker(client, settings, task_queue=settings.task_queue),
        running_api(settings) as url,
        running_api(drill) as drill_url,
    ):
        yield Stack(url=url, drill_url=drill_url, settings=settings, tokens=tokens_for(settings))


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def episode_id() -> Iterator[str]:
    yield unique("EP")
