"""An idle connection stays open long enough to be reused: a client that sends its next request
on it as the server closes it gets no answer (a browser or proxy does not resend a POST)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest

from tests.api.conftest import Stack

pytestmark = pytest.mark.integration

# uvicorn's own default, which a connection idle this long outlived only by luck
UVICORN_DEFAULT_KEEP_ALIVE = 5.0


async def _get_health(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: mispers\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await asyncio.wait_for(reader.readexactly(length), 10)
    return head.split(b"\r\n", 1)[0]


async def test_a_connection_idle_past_uvicorns_default_is_still_answered(stack: Stack) -> None:
    where = urlsplit(stack.url)
    assert where.hostname is not None and where.port is not None
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        assert await _get_health(reader, writer) == b"HTTP/1.1 200 OK"
        # the idleness under test: a pause longer than uvicorn's default keep-alive
        await asyncio.sleep(UVICORN_DEFAULT_KEEP_ALIVE + 1.5)
        assert await _get_health(reader, writer) == b"HTTP/1.1 200 OK"
    finally:
        writer.close()
