"""Safeguarding rules on the pure functions: floors, the downgrade guard, repeats,
locations of concern, disclosures and linked people."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mispers.domain import episode as rules
from mispers.domain.child_record import ChildRecordState, count_in_windows, record_episode
from mispers.domain.events import Actor
from mispers.domain.locations import LocationOfConcern, RegisterError, parse_register, postcode_key
from mispers.domain.messages import EpisodeSummaryForChild
from mispers.domain.people import age_on
from mispers.domain.refusals import EventRefused
from mispers.domain.risk import compute_floor, history_phrase
from mispers.domain.types import ObligationStatus, RiskLevel, Role
from testkit.factories import event
from tests.unit.rules_kit import POLICY, T0, Episode

H = dt.timedelta(hours=1)


def reported(**data: object) -> Episode:
    ep = Episode()
    ep.send("episode.reported", dict(data))
    return ep


def test_every_missing_child_is_graded_at_least_the_child_floor() -> None:
    ep = reported(initial_risk="low")
    risk = ep.state.risk
    assert risk is not None
    assert risk.level is RiskLevel.MEDIUM and risk.floor is RiskLevel.MEDIUM
    assert any("every missing child" in r for r in risk.floor_reasons)
    assert [g.level for g in risk.history] == [RiskLevel.LOW, RiskLevel.MEDIUM]
    assert risk.history[-1].automatic


def test_a_grading_below_the_floor_is_refused_naming_the_floor_and_why() -> None:
    ep = reported()
    with pytest.raises(EventRefused) as refused:
        ep.check("risk.assessed", {"level": "low", "rank": "inspector"})
    refusal = refused.value.refusal
    assert refusal.code == "below_floor"
    assert refusal.details["floor"] == "medium"
    assert "every missing child" in refusal.message


@pytest.mark.parametrize(
    "rationale",
    ["He always comes back", "known absconder", "It\u2019s what they always do", "WILL TURN UP"],
)
def test_a_downgrade_resting_on_history_is_refused_for_an_officer(rationale: str) -> None:
    ep = reported(initial_risk="high")
    officer = event(
        "risk.assessed", "E-1", ep.now, {"level": "medium", "rationale": rationale}
    ).model_copy(update={"actor": Actor(subject="pc", role=Role.OFFICER)})
    with pytest.raises(EventRefused) as refused:
        rules.check_event(ep.state, officer, POLICY, ep.now)
    assert refused.value.refusal.code == "history_rationale"


def test_a_supervisor_may_downgrade_on_history_but_the_grading_is_flagged() -> None:
    ep = reported(initial_risk="high")
    sup = event(
        "risk.assessed",
        "E-1",
        ep.now,
        {"level": "medium", "rationale": "always comes back; seen by PC"},
    ).model_copy(update={"actor": Actor(subject="sgt", role=Role.SUPERVISOR)})
    rules.check_event(ep.state, sup, POLICY, ep.now)
    rules.apply_event(ep.state, sup, POLICY, ep.now)
    assert ep.state.risk is not None and ep.state.risk.level is RiskLevel.MEDIUM
    assert ep.state.risk.history[-1].flagged


def test_raising_risk_is_always_accepted_even_with_a_history_phrase() -> None:
    ep = reported()
    ep.send("risk.assessed", {"level": "high", "rationale": "always comes back but not today"})
    assert ep.state.risk is not None and ep.state.risk.level is RiskLevel.HIGH


def test_repeat_thresholds_raise_the_floor_flag_and_require_meeting_and_screening() -> None:
    ep = reported(initial_risk="medium")
    rules.apply_child_history(ep.state, {30: 2, 90: 3, 365: 5}, [], POLICY, ep.now)
    assert ep.state.repeat.episodes_30d == 2 and ep.state.repeat.episodes_90d == 3
    assert "repeat" in ep.state.flags
    assert any("3 episodes in 90 days" in r for r in ep.state.risk.floor_reasons)  # type: ignore[union-attr]
    kinds = {o.kind.value for o in ep.state.outstanding()}
    assert {"strategy_meeting", "exploitation_screening"} <= kinds
    ep.send("risk.assessed", {"level": "medium", "factors": ["exploitation_screening"]})
    assert ep.ob("exploitation_screening").status is ObligationStatus.MET


def test_repeat_policy_is_data_a_stricter_force_raises_the_floor() -> None:
    stricter = POLICY.model_copy(
        update={
            "repeat": POLICY.repeat.model_copy(
                update={
                    "thresholds": [
                        POLICY.repeat.thresholds[0].model_copy(update={"floor": RiskLevel.HIGH})
                    ]
                }
            )
        }
    )
    ep = Episode(policy=stricter)
    ep.send("episode.reported")
    rules.apply_child_history(ep.state, {30: 2, 90: 2, 365: 2}, [], stricter, ep.now)
    assert ep.state.risk is not None and ep.state.risk.level is RiskLevel.HIGH


@settings(max_examples=200, deadline=None)
@given(
    counts=st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 10)), min_size=1, max_size=6
    )
)
def test_history_never_lowers_a_floor(counts: list[tuple[int, int, int]]) -> None:
    """Repeat episodes only ever raise risk: however the child's counts arrive, a count at least
    as large never gives a lower floor."""
    ep = reported()
    assert ep.state.risk is not None
    for c30, c90, c365 in counts:
        c90, c365 = max(c30, c90), max(c30, c90, c365)
        before = ep.state.risk.floor
        rules.apply_child_history(ep.state, {30: c30, 90: c90, 365: c365}, [], POLICY, ep.now)
        floor_now, _ = compute_floor(ep.state, POLICY)
        bigger = ep.state.model_copy(deep=True)
        bigger.repeat.by_days = {30: c30 + 1, 90: c90 + 1, 365: c365 + 1}
        assert compute_floor(bigger, POLICY)[0] >= floor_now
        assert ep.state.risk.level >= ep.state.risk.floor
        if "repeat" in ep.state.flags:
            assert ep.state.risk.floor >= before or before is RiskLevel.MEDIUM


def test_found_at_a_registered_sex_offenders_address() -> None:
    ep = reported()
    effects = ep.send("child.found", {"location": {"postcode": "n1 9gu"}})
    assert [c.postcode_key for c in effects.location_checks] == ["N19GU"]
    hit = LocationOfConcern(
        postcode_key="N19GU", category="registered_sex_offender", reference="RSO-7"
    )
    rules.apply_location_hits(ep.state, [hit], "found-1", POLICY, ep.now)
    assert ep.state.risk is not None and ep.state.risk.level is RiskLevel.HIGH
    assert {"location_of_concern", "cse"} <= set(ep.state.flags)
    assert ep.ob("linked_person_resolution:RSO-7").status is ObligationStatus.OPEN
    assert any(o.kind.value == "strategy_meeting" for o in ep.state.outstanding())
    with pytest.raises(EventRefused) as refused:
        ep.check("closure.requested")
    assert "linked_person_resolution:RSO-7" in refused.value.refusal.message


def test_sighting_with_a_linked_suspect_is_new_information_that_raises_risk() -> None:
    ep = reported()
    ep.send("linked_person.identified", {"person_ref": "P-9", "relation": "suspect"})
    assert ep.ob("linked_person_resolution:P-9").status is ObligationStatus.OPEN
    review = ep.ob("risk_review:info:1")
    assert review.due_at == T0 + H and review.owner.value == "sergeant"
    ep.send("sighting.reported", {"with_persons": ["P-9"]})
    assert "person_of_concern" in ep.state.flags
    assert ep.state.risk is not None and ep.state.risk.level is RiskLevel.HIGH


def test_closure_is_refused_while_a_suspect_is_untraced_then_allowed_once_resolved() -> None:
    ep = reported()
    ep.send("linked_person.identified", {"person_ref": "P-1"})
    ep.send("child.found")
    with pytest.raises(EventRefused) as refused:
        ep.check("closure.requested")
    assert "linked_person_resolution:P-1" in {
        o["id"] for o in refused.value.refusal.details["open_obligations"]
    }
    ep.send("linked_person.resolved", {"person_ref": "P-1"})
    assert ep.ob("linked_person_resolution:P-1").status is ObligationStatus.MET


@pytest.mark.parametrize(
    ("dob", "kind", "hint"),
    [
        ("2014-06-01", "sexual_activity", "under 13"),
        ("2011-01-01", "sexual_activity", "sexual activity with a child"),
        ("2008-01-01", "sexual_activity", None),
        ("2008-01-01", "sexual_offence", "sexual offence"),
        ("2011-01-01", "exploitation", "exploitation"),
        ("2011-01-01", "other", None),
    ],
)
def test_disclosures_create_crime_recording_by_age(dob: str, kind: str, hint: str | None) -> None:
    ep = reported(child={"date_of_birth": dob})
    ep.send("child.found")
    ep.send("safe_and_well.completed", {"disclosures": [{"kind": kind, "summary": "x"}]})
    crimes = [o for o in ep.state.obligations if o.kind.value == "crime_recording"]
    if hint is None:
        assert crimes == []
        return
    assert len(crimes) == 1 and hint in (crimes[0].reason or "")
    assert crimes[0].due_at == T0 + 24 * H
    assert ep.state.risk is not None and ep.state.risk.level is RiskLevel.HIGH
    ep.send("crime.recorded")
    assert crimes[0].id in {o.id for o in ep.state.obligations if o.status is ObligationStatus.MET}


def test_age_is_taken_at_the_time_of_the_disclosure() -> None:
    assert age_on(dt.date(2010, 3, 2), dt.date(2026, 3, 1)) == 15
    assert age_on(dt.date(2010, 3, 1), dt.date(2026, 3, 1)) == 16


def test_exploitation_disclosure_flags_cce_when_stated() -> None:
    ep = reported()
    ep.send("child.found")
    ep.send(
        "safe_and_well.completed",
        {"disclosures": [{"kind": "exploitation", "exploitation_type": "cce"}]},
    )
    assert "cce" in ep.state.flags and "cse" not in ep.state.flags


def test_exploitation_indicator_at_report_sets_flag_high_and_a_meeting() -> None:
    ep = reported(risk_factors=["county_lines"])
    assert "cce" in ep.state.flags
    assert ep.state.risk is not None and ep.state.risk.level is RiskLevel.HIGH
    assert ep.ob("strategy_meeting:1").reason == "exploitation indicator at report"


def test_history_phrase_detection_is_case_and_apostrophe_insensitive() -> None:
    phrases = POLICY.risk.history_rationale_phrases
    assert history_phrase("Known ABSCONDER, no concerns", phrases) == "known absconder"
    assert history_phrase("It\u2019s what they always do", phrases) is not None
    assert history_phrase("Located by CCTV at the station", phrases) is None


def test_postcodes_compare_without_case_or_spaces() -> None:
    assert postcode_key(" sw1a  1aa ") == postcode_key("SW1A1AA") == "SW1A1AA"
    assert postcode_key("") is None


def test_register_parses_and_refuses_malformed_lines_with_line_and_reason() -> None:
    text = (
        "postcode,category,reference\n"
        "N1 9GU,registered_sex_offender,RSO-7\n"
        "E1 6AN,exploitation,OP-1\n"
    )
    register = parse_register(text, "loc.csv")
    assert register["N19GU"][0].reference == "RSO-7"
    with pytest.raises(RegisterError, match=r"loc.csv: line 3: category must be one of"):
        parse_register(text.replace("exploitation,OP-1", "bad,OP-1"), "loc.csv")
    with pytest.raises(RegisterError, match="line 1: header"):
        parse_register("pc,cat,ref\n", "loc.csv")
    with pytest.raises(RegisterError, match="line 2: expected 3 fields"):
        parse_register("postcode,category,reference\nN1 9GU,other\n", "loc.csv")
    with pytest.raises(RegisterError, match="line 2: postcode"):
        parse_register("postcode,category,reference\n!!,other,X\n", "loc.csv")


def _summary(n: int, days_ago: float, postcode: str | None = None) -> EpisodeSummaryForChild:
    return EpisodeSummaryForChild(
        episode_id=f"E{n}",
        reported_at=T0 - dt.timedelta(days=days_ago),
        found_postcode_key=postcode,
    )


def test_child_record_counts_episodes_per_window_including_the_current_one() -> None:
    record = ChildRecordState(child_ref="C-1")
    for n, days in enumerate([200, 80, 20]):
        record_episode(record, _summary(n, days), [30, 90, 365], 2)
    history = record_episode(record, _summary(9, 0), [30, 90, 365], 2)
    assert history.counts_by_days == {30: 2, 90: 3, 365: 4}
    again = record_episode(record, _summary(9, 0), [30, 90, 365], 2)
    assert again.counts_by_days == history.counts_by_days  # re-registering counts once
    assert len(record.episodes) == 4


def test_found_at_the_same_place_twice_flags_the_place() -> None:
    record = ChildRecordState(child_ref="C-1")
    record_episode(record, _summary(1, 40, "SE17PB"), [30], 2)
    history = record_episode(record, _summary(2, 0, "SE17PB"), [30], 2)
    assert history.repeated_location_keys == ["SE17PB"]
    assert record.places_found[0].flagged
    ep = reported()
    ep.send("child.found", {"location": {"postcode": "se1 7pb"}})
    rules.apply_child_history(ep.state, {30: 1}, history.repeated_location_keys, POLICY, ep.now)
    assert "repeat_location" in ep.state.flags


def test_count_in_windows_edges() -> None:
    eps = [_summary(1, 30), _summary(2, 29.9)]
    assert count_in_windows(eps, T0, [30]) == {30: 1}
