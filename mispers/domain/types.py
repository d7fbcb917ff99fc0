"""The closed vocabularies of the domain, ordered where order carries meaning."""

from __future__ import annotations

from enum import StrEnum


class RiskLevel(StrEnum):
    """APP risk levels; declaration order is severity order (see `severity`)."""

    VERY_LOW = "very_low"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def severity(self) -> int:
        return _RISK_ORDER.index(self)

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, RiskLevel):
            return NotImplemented
        return self.severity >= other.severity

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, RiskLevel):
            return NotImplemented
        return self.severity > other.severity

    def __le__(self, other: object) -> bool:
        if not isinstance(other, RiskLevel):
            return NotImplemented
        return self.severity <= other.severity

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, RiskLevel):
            return NotImplemented
        return self.severity < other.severity


_RISK_ORDER = list(RiskLevel)


def max_risk(*levels: RiskLevel) -> RiskLevel:
    return max(levels, key=lambda level: level.severity)


class Rank(StrEnum):
    """Police ranks as they appear in events; the escalation order itself is policy data."""

    OFFICER = "officer"
    SERGEANT = "sergeant"
    INSPECTOR = "inspector"
    SUPERINTENDENT = "superintendent"


class Role(StrEnum):
    """Roles carried by bearer tokens (docs/contract.md, "Roles")."""

    SYSTEM = "system"
    OFFICER = "officer"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"


class EpisodeStatus(StrEnum):
    MISSING = "missing"
    FOUND = "found"
    CLOSED = "closed"


class ObligationKind(StrEnum):
    SYSTEMS_CHECKS = "systems_checks"
    SUPERVISOR_REVIEW = "supervisor_review"
    SOCIAL_SERVICES_NOTIFIED_MISSING = "social_services_notified_missing"
    RISK_REVIEW = "risk_review"
    PNC_CIRCULATED = "pnc_circulated"
    STRATEGY_MEETING = "strategy_meeting"
    SAFE_AND_WELL_CHECK = "safe_and_well_check"
    SOCIAL_SERVICES_NOTIFIED_RETURN = "social_services_notified_return"
    RETURN_INTERVIEW = "return_interview"
    CRIME_RECORDING = "crime_recording"
    LINKED_PERSON_RESOLUTION = "linked_person_resolution"
    CLOSURE_REVIEW = "closure_review"
    EXPLOITATION_SCREENING = "exploitation_screening"


class ObligationStatus(StrEnum):
    """`lapsed`: the obligation lost its purpose (e.g. a periodic review once the child is found);
    it is closed with a recorded reason instead of staying open or being silently dropped."""

    OPEN = "open"
    MET = "met"
    OVERDUE = "overdue"
    WAIVED = "waived"
    LAPSED = "lapsed"

    @property
    def is_outstanding(self) -> bool:
        # a module constant: looking members up on the class costs more than the test itself,
        # and the rules ask this of every obligation at every tick
        return self in _OUTSTANDING


_OUTSTANDING = frozenset({ObligationStatus.OPEN, ObligationStatus.OVERDUE})


class Flag(StrEnum):
    REPEAT = "repeat"
    CSE = "cse"
    CCE = "cce"
    LOCATION_OF_CONCERN = "location_of_concern"
    REPEAT_LOCATION = "repeat_location"
    LOOKED_AFTER = "looked_after"
    CRIME_DISCLOSED = "crime_disclosed"
    PERSON_OF_CONCERN = "person_of_concern"


class AlertState(StrEnum):
    """An alert's lifecycle: a page is triggered, someone takes it, and it ends when its
    obligation is met or waived (never by hand)."""

    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
