"""Delivering alerts to every configured sink, at least once.

An episode first delivers a batch with `deliver_alerts_once`, a local activity: one round over
the sinks, answering which took the batch and which failed. That spares the common case an
activity task's round trip through the server (three history events and a workflow task),
which is what alert lateness and history size are made of. Only if a sink failed does the
episode fall back to `deliver_alerts`, a regular activity that retries with back-off on the
server, heartbeats after every alert a sink took (keeping, in the heartbeat details, which
sinks and which alerts are done) and skips them on a retry: a long outage of one sink costs no
history, never re-sends to the others, and a few slow answers from one sink never re-send the
alerts it already took.

Episodes started before the local round (no `workflow.patched` marker) replay `deliver_alerts`
alone, as they ran it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from email.message import EmailMessage
from typing import Any, Protocol

import aiosmtplib
import httpx
from prometheus_client import Counter
from temporalio import activity
from temporalio.exceptions import ApplicationError

from mispers.config import Settings
from mispers.domain.messages import (
    AlertBatch,
    AlertDelivery,
    DeliverAlertsInput,
    DeliverAlertsOnceInput,
)
from mispers.domain.state import Alert
from mispers.logs import get_logger

log = get_logger("mispers.alerts")

# One webhook POST or one SMTP exchange may take this long before it counts as failed.
SEND_TIMEOUT = timedelta(seconds=10)
# `deliver_alerts` heartbeats after each alert a sink took, so a heartbeat gap is at most one
# send: the timeout must outlast a whole send, with room for the heartbeat's own round trip.
DELIVERY_HEARTBEAT_TIMEOUT = 2 * SEND_TIMEOUT
# One attempt of `deliver_alerts`; progress survives an attempt that runs out (heartbeats).
DELIVERY_ATTEMPT_TIMEOUT = timedelta(minutes=2)

Sent = Callable[[Alert], None]

ALERTS_RAISED = Counter(
    "mispers_alerts_raised",
    "Alerts raised for missed deadlines, by the rank alerted (counted once per delivery batch).",
    ["rank"],
)

# Only these fields leave the engine: ids, kinds, ranks and times; never child data.
ALERT_FIELDS = (
    "alert_id",
    "episode_id",
    "obligation_id",
    "kind",
    "due_at",
    "escalation_level",
    "rank",
    "raised_at",
)


def alert_payload(alert: Alert) -> dict[str, object]:
    data = alert.model_dump(mode="json")
    return {name: data[name] for name in ALERT_FIELDS} | {"scheduled_at": data["scheduled_at"]}


class AlertSink(Protocol):
    name: str

    async def send(self, alerts: Sequence[Alert], sent: Sent) -> None:
        """Deliver `alerts`, calling `sent` for each one as soon as it is delivered."""


class LogSink:
    """Always on: the structured log is the sink of last resort."""

    name = "log"

    async def send(self, alerts: Sequence[Alert], sent: Sent) -> None:
        for alert in alerts:
            log.warning("obligation overdue", **alert_payload(alert))
            sent(alert)


class WebhookSink:
    """One JSON POST per alert; a 2xx answer is delivery, anything else is retried."""

    name = "webhook"

    def __init__(self, url: str, timeout: timedelta = SEND_TIMEOUT) -> None:
        self.url = url
        self._client = httpx.AsyncClient(timeout=timeout.total_seconds())

    async def send(self, alerts: Sequence[Alert], sent: Sent) -> None:
        for alert in alerts:
            response = await self._client.post(self.url, json=alert_payload(alert))
            if not response.is_success:
                raise RuntimeError(f"webhook answered {response.status_code}")
            sent(alert)


class EmailSink:
    name = "email"

    def __init__(self, host: str, port: int, sender: str, recipients: Sequence[str]) -> None:
        self.host, self.port, self.sender, self.recipients = host, port, sender, list(recipients)

    async def send(self, alerts: Sequence[Alert], sent: Sent) -> None:
        message = EmailMessage()
        first = alerts[0]
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Subject"] = (
            f"[Mispers] {len(alerts)} overdue obligation(s) on episode {first.episode_id}: "
            f"escalated to {first.rank.value}"
        )
        lines = [
            f"{a.alert_id}: {a.kind.value} due {a.due_at.isoformat()} — level "
            f"{a.escalation_level}, to the {a.rank.value}"
            for a in alerts
        ]
        message.set_content("\n".join(lines) + "\n")
        await aiosmtplib.send(
            message,
            hostname=self.host,
            port=self.port,
            timeout=SEND_TIMEOUT.total_seconds(),
        )
        for alert in alerts:  # one message carries the whole batch
            sent(alert)


def sinks_from_settings(settings: Settings) -> list[AlertSink]:
    sinks: list[AlertSink] = [LogSink()]
    if settings.alert_webhook_url:
        sinks.append(WebhookSink(settings.alert_webhook_url))
    if settings.smtp_host and settings.alert_email_to:
        sinks.append(
            EmailSink(
                settings.smtp_host,
                settings.smtp_port,
                settings.alert_email_from,
                settings.alert_email_to,
            )
        )
    return sinks


class AlertActivities:
    def __init__(self, sinks: Sequence[AlertSink]) -> None:
        self._sinks = list(sinks)

    @activity.defn
    async def deliver_alerts(self, input: DeliverAlertsInput) -> list[str]:
        """Returns the sinks that took the batch; raises (to retry) while any has not."""
        info = activity.info()
        details = info.heartbeat_details
        progress = Progress.resume(details[0] if details else None, input.done)
        if info.attempt == 1 and not details and not input.counted:
            _count_raised(input.batch)
        failed = await self._round(input.batch, progress, heartbeat=True)
        if failed:
            raise ApplicationError(f"alert sinks not yet delivered: {', '.join(failed)}")
        return sorted(progress.done)

    @activity.defn
    async def deliver_alerts_once(self, input: DeliverAlertsOnceInput) -> AlertDelivery:
        """One round over every sink; a failing sink is answered, not raised: the workflow hands
        it to `deliver_alerts`, whose retries live on the server."""
        if activity.info().attempt == 1:
            _count_raised(input.batch)
        progress = Progress.resume(None, [])
        failed = await self._round(input.batch, progress, heartbeat=False)
        delivered = [sink.name for sink in self._sinks if sink.name in progress.done]
        return AlertDelivery(delivered=delivered, failed=failed)

    async def _round(self, batch: AlertBatch, progress: Progress, heartbeat: bool) -> list[str]:
        """Send to every sink not done the alerts it has not taken; answer the sinks that
        failed. With `heartbeat`, every alert taken is reported at once, with the progress."""

        def report() -> None:
            if heartbeat:
                activity.heartbeat(progress.details())

        failed: list[str] = []
        for sink in self._sinks:
            if sink.name in progress.done:
                continue
            taken = progress.sent.setdefault(sink.name, [])

            def sent(alert: Alert, taken: list[str] = taken) -> None:
                taken.append(alert.alert_id)
                report()

            try:
                await sink.send([a for a in batch.alerts if a.alert_id not in taken], sent)
            except Exception as exc:
                failed.append(sink.name)
                log.warning(
                    "alert delivery failed; will retry",
                    sink=sink.name,
                    batch_id=batch.batch_id,
                    error=type(exc).__name__,
                    attempt=activity.info().attempt,
                )
                continue
            progress.done.add(sink.name)
            progress.sent.pop(sink.name, None)
            report()
        return failed


class Progress:
    """What a delivery has achieved so far: the sinks that took the whole batch, and for the
    others the alerts each already took. Kept in heartbeat details, so a retried attempt (a
    killed worker, a timed-out attempt) resumes rather than re-sends."""

    def __init__(self, done: set[str], sent: dict[str, list[str]]) -> None:
        self.done = done
        self.sent = sent

    @classmethod
    def resume(cls, details: Any, first_done: Sequence[str]) -> Progress:
        if isinstance(details, dict):
            sent = {str(k): [str(i) for i in v] for k, v in dict(details.get("sent", {})).items()}
            return cls({str(d) for d in details.get("done", [])}, sent)
        if isinstance(details, list):  # heartbeats of deliveries started before per-alert progress
            return cls({str(d) for d in details}, {})
        return cls(set(first_done), {})

    def details(self) -> dict[str, object]:
        return {"done": sorted(self.done), "sent": {k: list(v) for k, v in self.sent.items()}}


def _count_raised(batch: AlertBatch) -> None:
    for alert in batch.alerts:
        ALERTS_RAISED.labels(rank=alert.rank.value).inc()
