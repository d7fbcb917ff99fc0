"""The register of locations of concern (`MISPERS_LOCATIONS_OF_CONCERN`): read from its CSV,
re-read when the file changes, checked for every sighting and found location."""

from __future__ import annotations

import os
from pathlib import Path

from temporalio import activity

from mispers.domain.locations import LocationOfConcern, RegisterError, parse_register
from mispers.domain.messages import CheckLocationInput
from mispers.logs import get_logger

log = get_logger(__name__)


class LocationsRegister:
    """Keeps the last good copy: a file broken while running is reported, not obeyed."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, list[LocationOfConcern]] = {}
        self._stamp: tuple[int, int] | None = None
        if path is not None:
            self._entries = self._read()  # a malformed file stops the worker at start

    def _read(self) -> dict[str, list[LocationOfConcern]]:
        assert self.path is not None
        try:
            stat = os.stat(self.path)
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RegisterError(f"{self.path}: cannot read: {exc.strerror}") from None
        entries = parse_register(text, str(self.path))
        self._stamp = (stat.st_mtime_ns, stat.st_size)
        return entries

    def lookup(self, postcode_key: str) -> list[LocationOfConcern]:
        if self.path is None:
            return []
        try:
            stat = os.stat(self.path)
            if (stat.st_mtime_ns, stat.st_size) != self._stamp:
                self._entries = self._read()
                log.info("locations register reloaded", entries=len(self._entries))
        except RegisterError as exc:
            log.error("locations register not reloaded; keeping the last good copy", error=str(exc))
        except OSError as exc:
            log.error("locations register unreadable; keeping the last good copy", error=str(exc))
        return list(self._entries.get(postcode_key, []))


class LocationActivities:
    def __init__(self, register: LocationsRegister) -> None:
        self._register = register

    @activity.defn
    async def check_location(self, input: CheckLocationInput) -> list[LocationOfConcern]:
        return self._register.lookup(input.postcode_key)
