"""Guard rails: the national figures are read from the `[N]` tags of the shipped policy, and a
candidate weakening any of them is found, figure by figure; a stricter one is not."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from mispers.policy import Policy, load_policy
from mispers.policy.loader import default_policy_path
from mispers.simulation.national import national_paths, weaker_than_national


@pytest.fixture(scope="module")
def shipped() -> dict[str, Any]:
    return load_policy().model_dump()


def candidate(shipped: dict[str, Any], **changes: Any) -> Policy:
    tree = {**shipped}
    for path, value in changes.items():
        node = tree
        parts = path.split("__")
        for part in parts[:-1]:
            node[part] = dict(node[part])
            node = node[part]
        node[parts[-1]] = value
    return Policy.model_validate(tree)


def test_national_figures_come_from_the_tags_of_the_shipped_file() -> None:
    paths = national_paths(default_policy_path().read_text(encoding="utf-8"))
    assert (
        "obligations.return_interview" in paths and "DfE" in paths["obligations.return_interview"]
    )
    assert "obligations.crime_recording" in paths and "disclosures" in paths
    assert "risk.child_min_level" in paths and "repeat" in paths
    assert "risk.history_rationale_phrases" in paths
    # "duty [N], hours [D]": the hours are the force's, not national
    assert "obligations.social_services_notified_missing" not in paths
    assert "escalation_interval" not in paths


def test_a_file_tagged_otherwise_guards_otherwise() -> None:
    text = (
        '[a]  # [N] rule\nx = "1h"\n[b]   # [D]\ny = 2  # [N] only this\n'
        "# [N] next key\nz = 1\n\nw = 3\n"
    )
    assert national_paths(text) == {"a": "[N] rule", "b.y": "[N] only this", "b.z": "[N] next key"}


def test_the_shipped_policy_and_a_stricter_one_are_not_weaker(shipped: dict[str, Any]) -> None:
    assert weaker_than_national(load_policy()) == []
    stricter = candidate(
        shipped,
        obligations__return_interview=dict(shipped["obligations"]["return_interview"])
        | {"due": {lvl: dt.timedelta(hours=48) for lvl in ("high", "medium", "low", "very_low")}},
        risk__child_min_level="high",
    )
    assert weaker_than_national(stricter) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"risk__child_min_level": "low"}, "risk.child_min_level"),
        ({"disclosures__age_of_consent": 14}, "disclosures.age_of_consent"),
        (
            {"repeat__thresholds": [{"episodes": 3, "days": 30, "floor": "medium"}]},
            "repeat.thresholds[0]",
        ),
        ({"repeat__same_location_episodes": 3}, "repeat.same_location_episodes"),
        (
            {"risk__history_rationale_phrases": ["always comes back"]},
            "risk.history_rationale_phrases",
        ),
    ],
)
def test_weaker_figures_are_named(
    shipped: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    found = weaker_than_national(candidate(shipped, **change))
    assert field in [w.field for w in found], found


def test_a_later_national_deadline_is_named_per_level(shipped: dict[str, Any]) -> None:
    rule = dict(shipped["obligations"]["return_interview"])
    rule["due"] = {**rule["due"], "medium": dt.timedelta(hours=96)}
    found = weaker_than_national(candidate(shipped, obligations__return_interview=rule))
    assert [(w.field, w.shipped, w.candidate) for w in found] == [
        ("obligations.return_interview.due.medium", "3d", "4d")
    ]
    assert "DfE 2014" in found[0].rule
