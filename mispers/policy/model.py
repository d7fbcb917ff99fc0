"""The policy model. Pure: imported by the workflow sandbox, so no I/O here (see loader.py)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from mispers.domain.types import ObligationKind, Rank, RiskLevel

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> Any:
    """Policy files say "30m", "4h", "7d"; pinned policies round-trip as ISO 8601 timedeltas."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            if seconds <= 0:
                raise ValueError("a duration must be positive")
            return dt.timedelta(seconds=seconds)
        if not value.startswith("P"):
            raise ValueError(f"{value!r} is not a duration: write a number and a unit, e.g. 4h")
    return value


Duration = Annotated[dt.timedelta, BeforeValidator(parse_duration)]


class PolicyModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PerLevel(PolicyModel):
    """A duration per risk level; a single duration in the file applies to all four."""

    high: Duration
    medium: Duration
    low: Duration
    very_low: Duration

    @model_validator(mode="before")
    @classmethod
    def _single_value(cls, value: Any) -> Any:
        if isinstance(value, str | dt.timedelta):
            return {level.value: value for level in RiskLevel}
        return value

    def for_level(self, level: RiskLevel) -> dt.timedelta:
        value: dt.timedelta = getattr(self, level.value)
        return value


class ObligationRule(PolicyModel):
    owner: Rank
    due: PerLevel
    looked_after_due: Duration | None = Field(
        None, description="Overrides `due` for a looked-after child (notifications)."
    )
    repeat_every: Duration | None = Field(
        None, description="Recurs at this interval while the condition holds (strategy meeting)."
    )
    missing_trigger: Duration | None = Field(
        None, description="Becomes required once the child has been missing this long."
    )


class ReviewStep(PolicyModel):
    rank: Rank
    after: Duration


class ReviewSchedule(PolicyModel):
    steps: list[ReviewStep] = Field(min_length=1)
    every: Duration


class RiskReviews(PolicyModel):
    """Periodic risk reviews while missing, per level: inspector, then superintendent, then
    every `every` (docs/rules.md)."""

    high: ReviewSchedule
    medium: ReviewSchedule
    low: ReviewSchedule
    very_low: ReviewSchedule

    def for_level(self, level: RiskLevel) -> ReviewSchedule:
        value: ReviewSchedule = getattr(self, level.value)
        return value


class RepeatThreshold(PolicyModel):
    episodes: int = Field(ge=2)
    days: int = Field(ge=1)
    floor: RiskLevel
    flag_repeat: bool = False
    requires: list[ObligationKind] = Field(default_factory=list)


class RiskPolicy(PolicyModel):
    child_min_level: RiskLevel = RiskLevel.MEDIUM
    history_rationale_phrases: list[str] = Field(default_factory=list)
    new_information_review: Duration = Field(
        description="A risk review falls due this long after new information arrives."
    )
    new_information_reviewer: Rank = Rank.SERGEANT


class RepeatPolicy(PolicyModel):
    windows_days: list[int] = Field(min_length=1)
    thresholds: list[RepeatThreshold] = Field(default_factory=list)
    same_location_episodes: int = Field(2, ge=2)


class DisclosurePolicy(PolicyModel):
    age_of_consent: int = Field(16, ge=1, le=18)
    under_13_age: int = Field(13, ge=1, le=18)


class AlertPolicy(PolicyModel):
    delivery_max_interval: Duration = Field(description="Cap on back-off between delivery retries.")
    closed_episode_delivery_grace: Duration = Field(
        description="How long a closed episode waits for outstanding alert deliveries."
    )


class Policy(PolicyModel):
    force: str = Field(min_length=1)
    version: str = Field(min_length=1)
    ranks: list[Rank] = Field(min_length=2, description="Escalation order, lowest first.")
    escalation_interval: PerLevel
    ack_timeout: PerLevel = Field(
        default_factory=lambda: PerLevel.model_validate(
            {"high": "30m", "medium": "2h", "low": "4h", "very_low": "8h"}
        ),
        description="How long an acknowledgement pauses escalation before the alert is "
        "triggered again (policies written before acknowledgements had it get these figures).",
    )
    obligations: dict[ObligationKind, ObligationRule]
    risk_reviews: RiskReviews
    risk: RiskPolicy
    repeat: RepeatPolicy
    disclosures: DisclosurePolicy = DisclosurePolicy()
    alerts: AlertPolicy

    @model_validator(mode="after")
    def _complete(self) -> Policy:
        missing = [
            k.value
            for k in ObligationKind
            if k not in self.obligations and k is not ObligationKind.RISK_REVIEW
        ]
        if missing:
            raise ValueError(f"obligations: missing rules for {', '.join(missing)}")
        if len(set(self.ranks)) != len(self.ranks):
            raise ValueError("ranks: each rank may appear once")
        return self

    def rule(self, kind: ObligationKind) -> ObligationRule:
        return self.obligations[kind]

    def scaled(self, scale: float) -> Policy:
        """Every duration divided by `scale` (drills, demos, tests)."""
        if scale == 1:
            return self
        return Policy.model_validate(_scale(self.model_dump(), scale))


def _scale(value: Any, scale: float) -> Any:
    if isinstance(value, dt.timedelta):
        return value / scale
    if isinstance(value, dict):
        return {k: _scale(v, scale) for k, v in value.items()}
    if isinstance(value, list):
        return [_scale(v, scale) for v in value]
    return value


class PinnedPolicy(BaseModel):
    """What an episode carries for its whole life: the effective (scaled) rules and where they
    came from, so replay is deterministic and a supervisor can see which rules applied."""

    model_config = ConfigDict(frozen=True)

    policy: Policy
    time_scale: float = 1.0
    digest: str

    @classmethod
    def pin(cls, policy: Policy, time_scale: float = 1.0) -> PinnedPolicy:
        digest = hashlib.sha256(policy.model_dump_json().encode()).hexdigest()[:12]
        return cls(policy=policy.scaled(time_scale), time_scale=time_scale, digest=digest)

    @property
    def version_label(self) -> str:
        scale = f"{self.time_scale:g}"
        return f"{self.policy.force}/{self.policy.version} (time scale {scale}, sha {self.digest})"
