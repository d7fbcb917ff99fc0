"""The close-time analytics export: one PII-free record per closed episode into the store
(`MISPERS_ANALYTICS`). The record is built in the workflow, so a retry or a replay writes the
same record under the same key, which the store replaces rather than adds to."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel
from temporalio import activity

from mispers.analytics.record import EpisodeRecord
from mispers.analytics.store import AnalyticsStore


class ExportRecordInput(BaseModel):
    record: EpisodeRecord


class AnalyticsActivities:
    def __init__(self, store: AnalyticsStore | None) -> None:
        # None (MISPERS_ANALYTICS_EXPORT=off): the local activity still runs and writes nothing,
        # so a bench can tell the write's cost from the rest of closing an episode
        self._store = store

    @activity.defn
    async def export_episode_record(self, input: ExportRecordInput) -> None:
        """Run as a local activity: a file write on the worker's own disk (or mount), with no
        task to route through the server and no activity left in flight there."""
        if self._store is None:
            return
        # the store's file I/O (and its wait for the DuckDB file's lock) off the event loop
        await asyncio.to_thread(self._store.write, [input.record])
