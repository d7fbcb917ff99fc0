from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mispers.domain.types import ObligationKind, RiskLevel
from mispers.policy import PinnedPolicy, PolicyError, load_policy
from mispers.policy.loader import default_policy_path


def test_shipped_policy_carries_the_domain_defaults() -> None:
    policy = load_policy()
    assert policy.risk.child_min_level is RiskLevel.MEDIUM
    checks = policy.rule(ObligationKind.SYSTEMS_CHECKS).due
    assert checks.high == dt.timedelta(minutes=30) and checks.medium == dt.timedelta(hours=1)
    review = policy.rule(ObligationKind.SUPERVISOR_REVIEW).due
    assert [review.high, review.medium, review.low, review.very_low] == [
        dt.timedelta(hours=h) for h in (1, 4, 8, 24)
    ]
    assert policy.escalation_interval.high == dt.timedelta(minutes=30)
    assert [(t.episodes, t.days) for t in policy.repeat.thresholds] == [(2, 30), (3, 90)]


def test_time_scale_divides_every_duration() -> None:
    pinned = PinnedPolicy.pin(load_policy(), 60)
    assert pinned.policy.rule(ObligationKind.PNC_CIRCULATED).due.high == dt.timedelta(minutes=48)
    assert pinned.policy.escalation_interval.medium == dt.timedelta(minutes=2)
    assert "time scale 60" in pinned.version_label and "2026.1" in pinned.version_label


def test_pinned_policy_round_trips_through_json() -> None:
    pinned = PinnedPolicy.pin(load_policy(), 3.5)
    assert PinnedPolicy.model_validate_json(pinned.model_dump_json()) == pinned


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = default_policy_path().read_text().replace(old, new, 1)
    path = tmp_path / "force.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("old", "new", "field", "rule"),
    [
        (
            'high = "30m"\nmedium = "2h"',
            'high = "soon"\nmedium = "2h"',
            "escalation_interval.high",
            "not a duration",
        ),
        (
            'child_min_level = "medium"',
            'child_min_level = "severe"',
            "risk.child_min_level",
            "Input should be",
        ),
        (
            'owner = "sergeant"',
            'owner = "constable"',
            "obligations.supervisor_review.owner",
            "Input should be",
        ),
        (
            "episodes = 2\ndays = 30",
            "episodes = 1\ndays = 30",
            "repeat.thresholds.0.episodes",
            "greater than or equal to 2",
        ),
    ],
)
def test_a_broken_policy_names_the_file_the_field_and_the_rule(
    tmp_path: Path, old: str, new: str, field: str, rule: str
) -> None:
    path = _broken(tmp_path, old, new)
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    message = str(err.value)
    assert str(path) in message and field in message and rule in message


def test_policy_that_is_not_toml_or_missing_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("force = [unclosed")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(bad)
    with pytest.raises(PolicyError, match="not found"):
        load_policy(tmp_path / "absent.toml")


def test_policy_missing_an_obligation_rule_is_refused(tmp_path: Path) -> None:
    text = default_policy_path().read_text()
    start = text.index("[obligations.pnc_circulated]")
    end = text.index("[obligations.strategy_meeting]")
    path = tmp_path / "p.toml"
    path.write_text(text[:start] + text[end:])
    with pytest.raises(PolicyError, match="missing rules for pnc_circulated"):
        load_policy(path)
