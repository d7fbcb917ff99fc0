"""Prometheus metrics of the API, on the process-wide default registry.

Alerts are raised in the worker, a separate process: the worker serves its own counters
(`mispers_alerts_raised_total{rank}`) on `MISPERS_WORKER_METRICS_PORT`, and where
`MISPERS_WORKER_METRICS_URL` names that endpoint (as `mispers dev` sets it) this `/metrics` appends
them, so one scrape shows the whole service; at scale Prometheus scrapes each worker pod instead.
Label values are bounded sets (event types we know, refusal codes, route templates), never raw
input.
"""

from __future__ import annotations

import time

import httpx
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mispers.domain.events import EVENT_MODELS

EVENTS_ACCEPTED = Counter(
    "mispers_events_accepted",
    "Events answered 202, by type and status (accepted, duplicate).",
    ["type", "status"],
)
EVENTS_REFUSED = Counter(
    "mispers_events_refused",
    "Events not recorded, by type and reason (refusal code or problem kind).",
    ["type", "reason"],
)
REQUEST_LATENCY = Histogram(
    "mispers_http_request_duration_seconds",
    "HTTP request latency by method, route template and status code.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


AUDIT_FAILURES = Counter(
    "mispers_audit_write_failures",
    "Audit records the sink could not take, by action; each such request was answered 503.",
    ["action"],
)


def count_audit_failure(action: str) -> None:
    AUDIT_FAILURES.labels(action=action).inc()


def type_label(event_type: str | None) -> str:
    return event_type if event_type in EVENT_MODELS else "unknown"


def count_accepted(event_type: str, status: str) -> None:
    EVENTS_ACCEPTED.labels(type=type_label(event_type), status=status).inc()


def count_refused(event_type: str | None, reason: str) -> None:
    EVENTS_REFUSED.labels(type=type_label(event_type), reason=reason).inc()


WORKER_METRICS_UP = Gauge(
    "mispers_worker_metrics_up",
    "1 if the worker's metrics were read for this scrape (MISPERS_WORKER_METRICS_URL), else 0.",
)


async def worker_metrics(url: str | None) -> bytes:
    """The worker's exposition, or nothing: a slow or stopped worker never fails this scrape."""
    if not url:
        return b""
    try:
        async with httpx.AsyncClient(timeout=1.0) as client:
            response = await client.get(url)
            response.raise_for_status()
    except httpx.HTTPError:
        WORKER_METRICS_UP.set(0)
        return b""
    WORKER_METRICS_UP.set(1)
    # Only the worker's own series: its process/platform collectors would clash with ours.
    lines = response.content.splitlines(keepends=True)
    return b"".join(line for line in lines if b"mispers_" in line)


async def metrics_response(worker_url: str | None = None) -> Response:
    worker = await worker_metrics(worker_url)
    return Response(generate_latest(REGISTRY) + worker, media_type=CONTENT_TYPE_LATEST)


class LatencyMiddleware:
    """Times every HTTP request; labels with the matched route template, not the path (which
    would grow one series per episode)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            REQUEST_LATENCY.labels(
                method=scope.get("method", "?"), route=template, status=str(status)
            ).observe(time.perf_counter() - started)
