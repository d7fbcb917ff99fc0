"""A PagerDuty Events API v2 sink (`MISPERS_PAGERDUTY_ROUTING_KEY`): a force that already pages
through PagerDuty, or a tool that accepts its events, plugs Mispers in with one variable.

Each lifecycle step is the matching event action (trigger, acknowledge, resolve) with
`dedup_key` = `alert_id`, so the incident follows the alert. A 429 or 5xx is raised, so the
delivery retries it with back-off; a 400 means PagerDuty will never take that event: it is
logged and counted and not retried (retrying it for ever would hold the batch's other sinks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
from prometheus_client import Counter

from activities.alerts import Notice
from mispers.domain.types import AlertState, RiskLevel
from mispers.logs import get_logger

log = get_logger("mispers.alerts.pagerduty")

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
ACTIONS = {
    AlertState.TRIGGERED: "trigger",
    AlertState.ACKNOWLEDGED: "acknowledge",
    AlertState.RESOLVED: "resolve",
}
SEVERITY = {
    RiskLevel.HIGH: "critical",
    RiskLevel.MEDIUM: "error",
    RiskLevel.LOW: "warning",
    RiskLevel.VERY_LOW: "info",
}
# Ids, kinds, ranks and times: nothing about the child.
DETAILS = (
    "episode_id",
    "obligation_id",
    "kind",
    "due_at",
    "escalation_level",
    "rank",
    "raised_at",
    "state",
    "acknowledged_by",
    "ack_expires_at",
    "resolved_at",
    "unstaffed",
    "risk_level",
    "reason",
)

REJECTED = Counter(
    "mispers_pagerduty_rejected",
    "Events PagerDuty refused as invalid (400): logged, not retried.",
    ["action"],
)


class PagerDutyThrottled(RuntimeError):
    """A 429 or 5xx: PagerDuty asks us to come back later."""


class PagerDutySink:
    name = "pagerduty"

    def __init__(self, routing_key: str, url: str = DEFAULT_URL, timeout: float = 10.0) -> None:
        self.routing_key, self.url = routing_key, url
        self._client = httpx.AsyncClient(timeout=timeout)

    async def send(self, notices: Sequence[Notice]) -> None:
        for notice in notices:
            event = self.event(notice)
            response = await self._client.post(self.url, json=event)
            if response.status_code == 429 or response.status_code >= 500:
                raise PagerDutyThrottled(f"PagerDuty answered {response.status_code}")
            if not response.is_success:
                REJECTED.labels(action=event["event_action"]).inc()
                log.error(
                    "PagerDuty refused the event; not retried",
                    status=response.status_code,
                    alert_id=notice.alert.alert_id,
                    action=event["event_action"],
                    answer=response.text[:300],
                )

    def event(self, notice: Notice) -> dict[str, Any]:
        alert = notice.alert
        event: dict[str, Any] = {
            "routing_key": self.routing_key,
            "event_action": ACTIONS[notice.transition],
            "dedup_key": alert.alert_id,
        }
        if notice.transition is AlertState.TRIGGERED:
            payload = notice.payload()
            event["payload"] = {
                "summary": (
                    f"Overdue {alert.kind.value} on episode {alert.episode_id}: "
                    f"level {alert.escalation_level}, to the {alert.rank.value}"
                )[:1024],
                "source": "mispers",
                "severity": SEVERITY.get(alert.risk_level or RiskLevel.MEDIUM, "error"),
                "timestamp": alert.raised_at.isoformat(),
                "component": alert.kind.value,
                "group": alert.rank.value,
                "class": "missing-child-obligation",
                "custom_details": {name: payload[name] for name in DETAILS},
            }
            if alert.ack_url:
                event["links"] = [{"href": alert.ack_url, "text": "Acknowledge in Mispers"}]
        return event
