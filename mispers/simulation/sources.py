"""Where recorded episodes' streams come from: a CloudEvents file (one JSON object a line, as
`mispers synth` writes and `mispers send` posts), replayed as it happened (each event recorded
at its own time), or the analytics store, whose records keep each episode's accepted events
without personal data, each at the instant the service recorded it (`mispers.simulation.stream`)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mispers.analytics.store import AnalyticsStore


class SourceError(Exception):
    """A source that cannot be simulated; the message says which and why."""


@dataclass
class Streams:
    by_episode: dict[str, list[dict[str, Any]]]
    pseudonymous_places: bool  # postcodes are pseudonyms: the register must be put through them
    description: str


def _reported(bodies: list[dict[str, Any]]) -> dt.datetime | None:
    for b in bodies:
        if b.get("type") == "mispers.episode.reported":
            return dt.datetime.fromisoformat(str(b["time"]).replace("Z", "+00:00"))
    return None


def within(streams: Streams, first: dt.date | None, last: dt.date | None) -> Streams:
    """Only the episodes reported from `first` to `last` (days included, UTC)."""
    if first is None and last is None:
        return streams
    kept: dict[str, list[dict[str, Any]]] = {}
    for episode_id, bodies in streams.by_episode.items():
        at = _reported(bodies)
        if at is None:
            continue
        day = at.astimezone(dt.UTC).date()
        if (first is None or day >= first) and (last is None or day <= last):
            kept[episode_id] = bodies
    return Streams(kept, streams.pseudonymous_places, streams.description)


def from_ndjson(path: Path) -> Streams:
    by_episode: dict[str, list[dict[str, Any]]] = {}
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    body = json.loads(line)
                    episode_id = str(body["subject"])
                    if "time" not in body:  # every event must say when it happened
                        raise KeyError("time")
                except (ValueError, KeyError, TypeError):
                    raise SourceError(
                        f"{path}: line {number}: not a CloudEvent with subject and time"
                    ) from None
                by_episode.setdefault(episode_id, []).append(body)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror}") from None
    return Streams(by_episode, False, f"CloudEvents file {path}")


def from_store(store: AnalyticsStore) -> Streams:
    con = store.reader()
    try:
        columns = {r[0] for r in con.execute("DESCRIBE episodes").fetchall()}
        if "stream" not in columns:
            raise SourceError(
                f"{store.describe()}: its records hold no event streams (written before "
                "simulation was added); simulate from a CloudEvents file instead"
            )
        found = con.execute(
            "SELECT episode_id, stream FROM episodes WHERE stream IS NOT NULL"
        ).fetchall()
    finally:
        con.close()
    by_episode: dict[str, list[dict[str, Any]]] = {}
    for episode_id, stream in found:
        bodies = json.loads(stream) if isinstance(stream, str) else stream
        if bodies:
            by_episode[episode_id] = bodies
    return Streams(by_episode, True, store.describe())
