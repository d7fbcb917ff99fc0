"""The offline driver: an episode's event stream applied to the pure rules, time advanced as the
workflow's loop advances it. Synthetic years, backfills, reports and policy simulation stand on
it; tests hold it to the workflow field by field."""

from mispers.offline.driver import (
    ChildRecords,
    EpisodeRun,
    Recorded,
    owed_alerts,
    run_episode,
)

__all__ = ["ChildRecords", "EpisodeRun", "Recorded", "owed_alerts", "run_episode"]
