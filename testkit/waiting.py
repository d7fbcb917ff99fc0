"""Waiting for asynchronous work by polling its observable result, never by sleeping blindly."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def eventually(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    within: float = ...,
    interval: float = ...,
    what: str = ...,
) -> T: ...


@overload
async def eventually(
    probe: Callable[[], T],
    until: Callable[[T], bool],
    within: float = ...,
    interval: float = ...,
    what: str = ...,
) -> T: ...


async def eventually(
    probe: Callable[[], Any],
    until: Callable[[Any], bool],
    within: float = 20.0,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll `probe` until `until(value)` holds or fail after `within` seconds (no blind sleeps).
    Tests and benchmarks both wait this way, so a wait that runs out reads the same in each."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within

    async def read() -> Any:
        value = probe()
        if inspect.isawaitable(value):
            return await value
        return value

    value = await read()
    while not until(value):
        if loop.time() > deadline:
            raise AssertionError(f"{what} not met within {within}s; last value: {value!r}")
        await asyncio.sleep(interval)
        value = await read()
    return value
