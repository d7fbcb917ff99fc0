"""structlog set-up shared by the worker, the API and the CLI: JSON lines on stderr.

Workflow code logs through `workflow.logger` (replay-safe); the stdlib logging bridge below
renders those records through the same processors, so every line has one shape."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

_configured = False


def shared_processors() -> list[Any]:
    """Processors every log line passes through. Redaction comes last so it sees every key the
    others added (context variables, stdlib `extra=`), and it renders exceptions itself with
    their messages redacted (mispers.security.redaction)."""
    from mispers.security.redaction import redact_processor

    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        redact_processor,
    ]


def configure_logging(level: str | None = None) -> None:
    global _configured
    if _configured:
        return
    _configured = True
    level_name = (level or os.environ.get("MISPERS_LOG_LEVEL") or "info").upper()
    processors = shared_processors()
    structlog.configure(
        processors=[*processors, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=processors,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level_name)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
