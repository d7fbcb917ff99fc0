"""The sender's authority on the pure rules: every role x token rank x event type x claimed rank,
the downgrade guard per role, and the ranks tokens may carry."""

from __future__ import annotations

import itertools

import pytest

from mispers.domain import episode as rules
from mispers.domain.authority import RankError, check_authority, token_rank
from mispers.domain.events import EVENT_MODELS, Actor, EventBase
from mispers.domain.refusals import EventRefused
from mispers.domain.types import Rank, RiskLevel, Role
from testkit.factories import event
from tests.unit.rules_kit import POLICY, Episode

# Ranks written out in seniority order, independently of the module under test.
SENIORITY = ["officer", "sergeant", "inspector", "superintendent"]
RANKED_TYPES = {"mispers.risk.assessed", "mispers.closure.approved"}
# The ranks a token of each role may carry (None: the role's default, or no rank at all).
TOKEN_RANKS: dict[Role, list[Rank | None]] = {
    Role.SYSTEM: [None],
    Role.AUDITOR: [None],
    Role.OFFICER: [None, *Rank],
    Role.SUPERVISOR: [None, Rank.SERGEANT, Rank.INSPECTOR, Rank.SUPERINTENDENT],
}
DEFAULT = {Role.OFFICER: "officer", Role.SUPERVISOR: "sergeant"}


def expected(role: Role, held: Rank | None, event_type: str, claimed: str | None) -> str | None:
    """The refusal code the rules must give, from the contract's sentences."""
    if role is Role.AUDITOR:
        return "auditor_reads_only"
    if event_type == "mispers.closure.approved" and role is not Role.SUPERVISOR:
        return "supervisor_only"
    if claimed is not None and role is not Role.SYSTEM:
        token = held.value if held is not None else DEFAULT[role]
        if SENIORITY.index(claimed) > SENIORITY.index(token):
            return "rank_above_token"
    return None


def reported() -> Episode:
    ep = Episode()
    ep.send("episode.reported", {"initial_risk": "medium"})
    return ep


EPISODE = reported()
CASES = [
    (role, held, event_type, claimed)
    for role, event_type in itertools.product(Role, sorted(EVENT_MODELS))
    for held in TOKEN_RANKS[role]
    for claimed in (SENIORITY if event_type in RANKED_TYPES else [None])
]


@pytest.mark.parametrize(("role", "held", "event_type", "claimed"), CASES)
def test_role_rank_event_matrix(
    role: Role, held: Rank | None, event_type: str, claimed: str | None
) -> None:
    actor = Actor(subject="X-1", role=role, rank=token_rank(role, held))
    data: dict[str, str] = {}
    if claimed is not None:
        data = {"rank": claimed}
    if event_type == "mispers.risk.assessed":
        data["level"] = "high"  # a raise: the downgrade guard has its own test
    ev = event(event_type, "E-1", EPISODE.now, data, actor=actor)
    want = expected(role, held, event_type, claimed)
    if want is None:
        check_authority(EPISODE.state, ev)
        return
    with pytest.raises(EventRefused) as refused:
        check_authority(EPISODE.state, ev)
    assert (refused.value.refusal.code, refused.value.refusal.kind) == (want, "authority")


@pytest.mark.parametrize("role", [Role.SYSTEM, Role.OFFICER, Role.SUPERVISOR])
@pytest.mark.parametrize("level", ["low", "medium", "high"])
def test_only_a_supervisor_lowers_risk(role: Role, level: str) -> None:
    ep = Episode()
    ep.send("episode.reported", {"initial_risk": "high"})
    actor = Actor(subject="X-1", role=role, rank=token_rank(role, None))
    rank = "officer" if role is Role.OFFICER else "sergeant"
    ev = event("risk.assessed", "E-1", ep.now, {"level": level, "rank": rank}, actor=actor)
    lowers = RiskLevel(level) < RiskLevel.HIGH
    if lowers and role is not Role.SUPERVISOR:
        with pytest.raises(EventRefused) as refused:
            check_authority(ep.state, ev)
        assert refused.value.refusal.code == "downgrade_needs_supervisor"
        assert refused.value.refusal.details["current"] == "high"
    else:
        check_authority(ep.state, ev)


def test_an_event_without_actor_is_refused_never_taken_for_a_supervisors() -> None:
    ep = reported()
    for kind in ("enquiry.recorded", "risk.assessed", "closure.approved"):
        with pytest.raises(EventRefused) as refused:
            rules.check_event(ep.state, event(kind, "E-1", ep.now, actor=None), POLICY, ep.now)
        assert refused.value.refusal.code == "no_actor"


def test_a_rank_refusal_names_both_ranks() -> None:
    ep = reported()
    officer = Actor(subject="PC-1", role=Role.OFFICER, rank=Rank.OFFICER)
    ev: EventBase = event("risk.assessed", "E-1", ep.now, {"rank": "superintendent"}, actor=officer)
    with pytest.raises(EventRefused) as refused:
        rules.check_event(ep.state, ev, POLICY, ep.now)
    assert refused.value.refusal.details == {
        "claimed_rank": "superintendent",
        "token_rank": "officer",
    }


def test_ranks_a_token_may_carry() -> None:
    assert token_rank(Role.OFFICER, None) is Rank.OFFICER
    assert token_rank(Role.SUPERVISOR, None) is Rank.SERGEANT
    assert token_rank(Role.SUPERVISOR, Rank.INSPECTOR) is Rank.INSPECTOR
    assert token_rank(Role.SYSTEM, None) is None
    assert token_rank(Role.AUDITOR, None) is None
    for role in (Role.SYSTEM, Role.AUDITOR):
        with pytest.raises(RankError, match="carries no rank"):
            token_rank(role, Rank.SERGEANT)
    with pytest.raises(RankError, match="sergeant or above"):
        token_rank(Role.SUPERVISOR, Rank.OFFICER)
