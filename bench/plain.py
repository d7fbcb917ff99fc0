"""`python -m bench.plain worker|api`: Mispers with the payload codec switched off, for the
codec-overhead figure of the ingest benchmark only.

The service has no setting that turns encryption off (on purpose: it must never write child
data in plain text). This launcher replaces `mispers.engine.client.data_converter`, which
`connect()` calls for the worker and the API, by the plain pydantic converter, then runs the
ordinary `mispers` command. Never use it with real data."""

from __future__ import annotations

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

import mispers.engine.client as engine_client
from mispers.config import Settings


def _plain(settings: Settings | None = None) -> DataConverter:
    return pydantic_data_converter


def main() -> None:
    engine_client.data_converter = _plain
    from mispers.cli import app

    app()


if __name__ == "__main__":
    main()
