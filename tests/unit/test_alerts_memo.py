"""What the episode's `alerts` memo lists of its unresolved alerts: what `GET /v1/alerts` and the
dashboard's "alerts for my rank" read without replaying the workflow."""

from __future__ import annotations

import datetime as dt

from mispers.domain.state import Alert
from mispers.domain.types import AlertState, ObligationKind, Rank
from workflows.episode import MEMO_UNRESOLVED_PER_OBLIGATION, memo_unresolved

DUE = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def ladder(obligation: str, levels: int, first_rank: Rank = Rank.SERGEANT) -> list[Alert]:
    """A first alert to `first_rank`, then re-alerts to the superintendent every hour."""
    return [
        Alert(
            alert_id=f"EP-1:{obligation}:L{level}",
            episode_id="EP-1",
            obligation_id=obligation,
            kind=ObligationKind.SYSTEMS_CHECKS,
            due_at=DUE,
            escalation_level=level,
            rank=first_rank if level == 1 else Rank.SUPERINTENDENT,
            raised_at=DUE + dt.timedelta(hours=level - 1),
            scheduled_at=DUE + dt.timedelta(hours=level - 1),
        )
        for level in range(1, levels + 1)
    ]


def ids(alerts: list[Alert]) -> list[str]:
    return [a.alert_id for a in alerts]


def test_the_first_rank_paged_stays_listed_however_often_the_top_rank_is_realerted() -> None:
    alerts = ladder("systems_checks", 12)
    kept = memo_unresolved(alerts, each_rank=True)
    assert "EP-1:systems_checks:L1" in ids(kept)
    newest = ids(alerts[-MEMO_UNRESOLVED_PER_OBLIGATION:])
    assert ids(kept) == ["EP-1:systems_checks:L1", *newest]


def test_episodes_that_ran_before_the_change_keep_the_newest_five_only() -> None:
    alerts = ladder("systems_checks", 12)
    kept = memo_unresolved(alerts, each_rank=False)
    assert ids(kept) == ids(alerts[-MEMO_UNRESOLVED_PER_OBLIGATION:])


def test_an_acknowledged_alert_of_a_rank_is_kept_beside_its_triggered_one() -> None:
    alerts = ladder("systems_checks", 9)
    alerts[1] = alerts[1].model_copy(update={"state": AlertState.ACKNOWLEDGED})
    kept = ids(memo_unresolved(alerts, each_rank=True))
    assert kept[:2] == ["EP-1:systems_checks:L1", "EP-1:systems_checks:L2"]
    assert len(kept) == 2 + MEMO_UNRESOLVED_PER_OBLIGATION


def test_resolved_alerts_are_not_among_the_unresolved() -> None:
    alerts = [
        a.model_copy(update={"state": AlertState.RESOLVED}) for a in ladder("supervisor", 3)
    ] + ladder("systems_checks", 2)
    assert ids(memo_unresolved(alerts, each_rank=True)) == [
        "EP-1:systems_checks:L1",
        "EP-1:systems_checks:L2",
    ]
