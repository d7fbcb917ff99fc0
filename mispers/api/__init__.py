"""The HTTP API: CloudEvents ingest and supervisor reads, translated to Temporal client calls."""

from mispers.api.app import create_app
from mispers.api.server import serve_api

__all__ = ["create_app", "serve_api"]
