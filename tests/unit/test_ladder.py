"""The escalation ladder's arithmetic, with properties checked over generated cases."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from mispers.domain import ladder
from mispers.domain.state import Obligation
from mispers.domain.types import ObligationKind, ObligationStatus, Rank

RANKS = [Rank.OFFICER, Rank.SERGEANT, Rank.INSPECTOR, Rank.SUPERINTENDENT]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def obligation(owner: Rank, due_in: dt.timedelta) -> Obligation:
    due = T0 + due_in
    return Obligation(
        id="x",
        kind=ObligationKind.PNC_CIRCULATED,
        owner=owner,
        due_at=due,
        anchor_at=T0,
        next_escalation_at=due,
    )


def test_alert_goes_one_rank_above_the_owner_then_climbs_and_stays_at_the_top() -> None:
    assert [ladder.alert_rank(RANKS, Rank.OFFICER, n) for n in range(1, 6)] == [
        Rank.SERGEANT,
        Rank.INSPECTOR,
        Rank.SUPERINTENDENT,
        Rank.SUPERINTENDENT,
        Rank.SUPERINTENDENT,
    ]
    assert ladder.alert_rank(RANKS, Rank.SUPERINTENDENT, 1) is Rank.SUPERINTENDENT


def test_nothing_is_raised_before_the_deadline_and_one_alert_at_it() -> None:
    ob = obligation(Rank.OFFICER, dt.timedelta(hours=1))
    hour = dt.timedelta(hours=1)
    before = T0 + dt.timedelta(minutes=59)
    assert ladder.escalate(ob, episode_id="E", now=before, interval=hour, ranks=RANKS) == []
    assert ob.status.value == "open"
    raised = ladder.escalate(ob, episode_id="E", now=T0 + hour, interval=hour, ranks=RANKS)
    assert [(a.alert_id, a.rank, a.escalation_level) for a in raised] == [
        ("E:x:L1", Rank.SERGEANT, 1)
    ]
    assert ob.status is ObligationStatus.OVERDUE
    assert ob.next_escalation_at == T0 + 2 * hour


def test_a_long_outage_collapses_top_rank_re_alerts_into_one() -> None:
    ob = obligation(Rank.OFFICER, dt.timedelta(hours=1))
    raised = ladder.escalate(
        ob,
        episode_id="E",
        now=T0 + dt.timedelta(days=30),
        interval=dt.timedelta(hours=1),
        ranks=RANKS,
    )
    assert [a.rank for a in raised] == [
        Rank.SERGEANT,
        Rank.INSPECTOR,
        Rank.SUPERINTENDENT,
        Rank.SUPERINTENDENT,
    ]
    assert raised[-1].escalation_level == 4


@settings(max_examples=300, deadline=None)
@given(
    owner=st.sampled_from(RANKS),
    due_minutes=st.integers(min_value=1, max_value=10_000),
    interval_minutes=st.integers(min_value=1, max_value=600),
    ticks=st.lists(st.integers(min_value=0, max_value=5_000), min_size=1, max_size=20),
)
def test_ladder_properties(
    owner: Rank, due_minutes: int, interval_minutes: int, ticks: list[int]
) -> None:
    """However time is sampled: levels are contiguous from 1, ranks never go down, every alert
    is scheduled at or after the deadline and no later than the tick that raised it, ids are
    unique, and the next escalation is always in the future."""
    ob = obligation(owner, dt.timedelta(minutes=due_minutes))
    interval = dt.timedelta(minutes=interval_minutes)
    now = T0
    alerts = []
    for step in ticks:
        now += dt.timedelta(minutes=step)
        raised = ladder.escalate(ob, episode_id="E", now=now, interval=interval, ranks=RANKS)
        for alert in raised:
            assert ob.due_at <= alert.scheduled_at <= now
        alerts += raised
        if ob.next_escalation_at is not None:
            assert ob.next_escalation_at > now
    assert [a.escalation_level for a in alerts] == list(range(1, len(alerts) + 1))
    order = [RANKS.index(a.rank) for a in alerts]
    assert order == sorted(order)
    assert all(RANKS.index(a.rank) > RANKS.index(owner) or a.rank is RANKS[-1] for a in alerts)
    assert len({a.alert_id for a in alerts}) == len(alerts)
    assert (ob.status is ObligationStatus.OVERDUE) == bool(alerts)


@settings(max_examples=200, deadline=None)
@given(
    due_minutes=st.integers(min_value=1, max_value=5_000),
    new_due_minutes=st.integers(min_value=1, max_value=5_000),
    elapsed=st.integers(min_value=0, max_value=5_000),
)
def test_a_deadline_change_never_delays_anything(
    due_minutes: int, new_due_minutes: int, elapsed: int
) -> None:
    ob = obligation(Rank.OFFICER, dt.timedelta(minutes=due_minutes))
    interval = dt.timedelta(minutes=30)
    now = T0 + dt.timedelta(minutes=elapsed)
    ladder.escalate(ob, episode_id="E", now=now, interval=interval, ranks=RANKS)
    due_before, next_before = ob.due_at, ob.next_escalation_at
    ladder.next_escalation_after_deadline_change(
        ob, T0 + dt.timedelta(minutes=new_due_minutes), now, interval
    )
    assert ob.due_at <= due_before
    assert (
        next_before is None or ob.next_escalation_at is None or ob.next_escalation_at <= next_before
    )
