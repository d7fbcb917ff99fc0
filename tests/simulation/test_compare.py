"""The comparison's counting on a hand-made set worked out by hand: night is London's night
(British Summer Time included), hours of the week are London's, lateness bands, closures that
only the candidate refuses, grades that differ, the most changed episode first."""

from __future__ import annotations

import datetime as dt

from mispers.simulation.compare import compare, hour_label, hour_of_week, is_night
from mispers.simulation.run import AlertSeen, Compared, Outcome

UTC = dt.UTC


def alert(n: int, rank: str, at: dt.datetime) -> AlertSeen:
    return AlertSeen(f"E:{n}", rank, "systems_checks", 1, at)


def test_figures_of_a_small_set() -> None:
    summer_night = dt.datetime(2026, 7, 6, 21, 30, tzinfo=UTC)  # Monday 22:30 BST: night
    winter_evening = dt.datetime(2026, 1, 5, 21, 30, tzinfo=UTC)  # Monday 21:30 GMT: not
    early = dt.datetime(2026, 1, 6, 6, 59, tzinfo=UTC)  # Tuesday 06:59 GMT: night
    same = Outcome(alerts=[alert(1, "sergeant", winter_evening)], grades=["medium"])
    base_b = Outcome(alerts=[alert(2, "sergeant", summer_night)], grades=["medium"])
    cand_b = Outcome(
        alerts=[alert(2, "sergeant", summer_night), alert(3, "inspector", early)],
        overdue=[("social_services_notified_missing", 30.0), ("return_interview", 60 * 10)],
        refused=[("ev-9", "mispers.closure.approved", "obligations_open")],
        grades=["medium", "high"],
    )
    compared = [
        Compared("E-A", 5, None, same, same),
        Compared("E-B", 7, None, base_b, cand_b),
    ]
    result = compare(
        compared, dt.date(2026, 1, 1), dt.date(2026, 12, 31), {"baseline": "b", "candidate": "c"},
        [], "hand-made",
    )  # fmt: skip
    base, cand = result["baseline"], result["candidate"]
    assert base["alerts_by_rank"] == {"sergeant": 2}
    assert cand["alerts_by_rank"] == {"sergeant": 2, "inspector": 1}
    assert base["night_share"] == 0.5 and cand["night_share"] == round(2 / 3, 3)
    assert cand["night_share_by_rank"] == {"sergeant": 0.5, "inspector": 1.0}
    assert cand["busiest_hour_of_week_by_rank"]["inspector"] == {"hour": "Tue 06:00", "alerts": 1}
    assert base["alerts_per_day_by_rank"] == {"sergeant": round(2 / 365, 2)}
    assert cand["overdue_by_kind"] == {"return_interview": 1, "social_services_notified_missing": 1}
    assert cand["overdue_by_lateness"]["under_1h"] == 1
    assert cand["overdue_by_lateness"]["4h_to_24h"] == 1
    assert base["overdue_total"] == 0 and base["closures_refused"] == 0
    assert cand["closures_refused"] == 1
    assert result["closures_refused_only_under_candidate"] == {"count": 1, "episodes": ["E-B"]}
    assert result["risk_grades_differ"] == {"count": 1, "episodes": ["E-B"]}
    assert result["episodes_changed"] == 1 and result["changed_most"][0]["episode_id"] == "E-B"
    assert result["events"] == 12 and result["episodes"] == 2
    assert hour_label(0) == "Mon 00:00" and hour_label(167) == "Sun 23:00"


def test_a_year_of_alerts_is_placed_in_london_hours_across_both_clock_changes() -> None:
    """The comparison places each UTC hour in London's week once; every alert of a year, one
    every 37 minutes through both clock changes, lands where its own London time says."""
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    times = [start + dt.timedelta(minutes=37 * i) for i in range(365 * 24 * 60 // 37)]
    outcome = Outcome(alerts=[alert(i, "sergeant", at) for i, at in enumerate(times)])
    result = compare(
        [Compared("E-Y", 1, None, outcome, outcome)], dt.date(2026, 1, 1), dt.date(2026, 12, 31),
        {"baseline": "b", "candidate": "c"}, [], "a year",
    )  # fmt: skip
    expected = [0] * 168
    for at in times:
        expected[hour_of_week(at)] += 1
    assert result["baseline"]["alerts_by_hour_of_week_by_rank"]["sergeant"] == expected
    night = sum(is_night(at) for at in times) / len(times)
    assert result["baseline"]["night_share"] == round(night, 3)
    # the clock changes are in the year: the same UTC hour is an hour apart in London
    assert hour_of_week(dt.datetime(2026, 1, 5, 12, tzinfo=UTC)) % 24 == 12
    assert hour_of_week(dt.datetime(2026, 7, 6, 12, tzinfo=UTC)) % 24 == 13
