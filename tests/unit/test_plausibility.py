"""Dates that parse but cannot be true are refused before they reach an episode."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from mispers.domain.plausibility import implausibilities
from testkit.factories import event

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def rules(kind: str, data: dict[str, Any] | None = None, at: dt.datetime = NOW) -> set[str]:
    return {f"{w.field}:{w.rule}" for w in implausibilities(event(kind, "EP-1", at, data), NOW)}


def test_a_plausible_report_passes() -> None:
    assert rules("episode.reported", {"last_seen_at": "2026-11-22T09:00:00Z"}) == set()


@pytest.mark.parametrize(
    ("data", "at", "expected"),
    [
        (
            {"child": {"date_of_birth": "4201-01-01"}},
            NOW,
            "data.child.date_of_birth:implausible_date_of_birth",
        ),
        (
            {"child": {"date_of_birth": "1850-01-01"}},
            NOW,
            "data.child.date_of_birth:implausible_date_of_birth",
        ),
        ({"child": {"date_of_birth": "2008-11-22"}}, NOW, "data.child.date_of_birth:not_a_child"),
        ({"last_seen_at": "2026-11-22T13:00:00Z"}, NOW, "data.last_seen_at:after_report"),
        ({"last_seen_at": "0063-01-01T00:00:00Z"}, NOW, "data.last_seen_at:before_earliest"),
        (
            {"last_seen_at": "0063-01-01T00:00:00Z"},
            dt.datetime(63, 1, 2, tzinfo=dt.UTC),
            "time:before_earliest",
        ),
        (
            {"last_seen_at": "2026-11-22T09:00:00Z"},
            NOW + dt.timedelta(minutes=6),
            "time:in_the_future",
        ),
    ],
)
def test_implausible_reports_name_the_field_and_rule(
    data: dict[str, Any], at: dt.datetime, expected: str
) -> None:
    assert expected in rules("episode.reported", data, at)


def test_the_day_before_the_eighteenth_birthday_is_still_a_child() -> None:
    assert (
        rules(
            "episode.reported",
            {"child": {"date_of_birth": "2008-11-23"}, "last_seen_at": "2026-11-22T09:00:00Z"},
        )
        == set()
    )


def test_small_clock_skew_is_tolerated() -> None:
    ahead = NOW + dt.timedelta(minutes=4)
    assert rules("sighting.reported", {"seen_at": ahead.isoformat()}, ahead) == set()
    assert rules("child.found", {"found_at": "2027-01-01T00:00:00Z"}) == {
        "data.found_at:in_the_future"
    }
