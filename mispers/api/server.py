"""Running the API under uvicorn inside an asyncio program (`mispers api`, `mispers dev`).

uvicorn normally owns SIGINT/SIGTERM; here the caller does (through `stop`), so `mispers dev`
can stop the API, the worker and the embedded server in order on one Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Generator

import uvicorn
from temporalio.client import Client

from mispers.api.app import create_app
from mispers.config import Settings
from mispers.logs import configure_logging, get_logger

log = get_logger("mispers.api")

GRACEFUL_SHUTDOWN_SECONDS = 10
# How long an idle connection is kept open. A client (a browser, a proxy) reuses its connection
# for the next request; if the server closes it at that moment, the request fails unanswered
# (a POST is not retried). uvicorn's 5 s left that window open to any pause of a few seconds on
# either side; this outlasts the idle timeout of common load balancers (60 s), so the one in
# front closes first.
KEEP_ALIVE_SECONDS = 75


class ApiStartupError(Exception):
    """The API could not start (most often: the port is taken); the message says which."""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # signals are serve_api's caller's (or serve_api's own handlers')


async def serve_api(
    settings: Settings, stop: asyncio.Event | None = None, *, client: Client | None = None
) -> None:
    """Serve until `stop` is set; without one, until SIGINT or SIGTERM. In-flight requests
    finish (up to GRACEFUL_SHUTDOWN_SECONDS) before this returns."""
    configure_logging()
    app = create_app(settings, client)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # our structlog set-up renders uvicorn's records too
        access_log=False,  # request lines carry ids only via our own logs
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        lifespan="off",
    )
    server = _Server(config)
    own_signals = stop is None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if own_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)

    async def run() -> None:
        try:
            await server.serve()
        except SystemExit:  # uvicorn exits the process when it cannot bind; we report instead
            raise ApiStartupError(
                f"cannot serve on {settings.http_host}:{settings.http_port} (is the port taken?)"
            ) from None

    serving = asyncio.create_task(run(), name="mispers-api")
    stopping = asyncio.create_task(stop.wait(), name="mispers-api-stop")
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            serving.result()  # raises ApiStartupError or whatever stopped the server
            return
        log.info("api stopping")
        server.should_exit = True
        await serving
    finally:
        stopping.cancel()
        if not serving.done():
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, ApiStartupError):
                await serving
        if own_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
    log.info("api stopped")
