"""The FastAPI application: routes, error shape, metrics and the OpenAPI document, wired once."""

from __future__ import annotations

from fastapi import FastAPI
from temporalio.client import Client

from mispers import __version__
from mispers.api import alerts, ingest, ops, reads, reports
from mispers.api.auth import load_secret
from mispers.api.codec_server import codec_router
from mispers.api.context import ApiContext
from mispers.api.metrics import LatencyMiddleware
from mispers.api.openapi import build_openapi
from mispers.api.problems import install_handlers
from mispers.config import Settings

DESCRIPTION = """\
CloudEvents in, episode state out. Every endpoint but `/healthz`, `/openapi.json` and `/docs`
needs `Authorization: Bearer <token>` (`mispers token --role ROLE --subject ID`). Roles:
`system` sends events except supervisor decisions; `officer` sends those and reads;
`supervisor` does everything, including `mispers.closure.approved` (waivers) and lowering a risk
grade; `auditor` reads. Errors are `application/problem+json`, naming fields and rules, never
the values sent."""


def create_app(settings: Settings, client: Client | None = None) -> FastAPI:
    """Without a client the API connects on first use, so it starts (and reports itself
    degraded on /healthz) while Temporal is still coming up."""
    app = FastAPI(
        title="Mispers",
        version=__version__,
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.mispers = ApiContext(settings, load_secret(settings), client)
    install_handlers(app)
    app.add_middleware(LatencyMiddleware)
    app.include_router(ingest.router, tags=["events"])
    app.include_router(reads.router, tags=["reads"])
    app.include_router(reports.router, tags=["reports"])
    app.include_router(alerts.router, tags=["alerts"])
    app.include_router(ops.router, tags=["operations"])
    app.include_router(codec_router(settings))  # /codec/encode|decode for the Web UI and CLI
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app
