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
alone, as they ran it.

Each batch is one step of the alerts' lifecycle (`transition`: triggered, acknowledged,
resolved; a batch of an episode from before the lifecycle is a trigger). A triggered alert is
addressed here: the rota names the person on duty for its rank (or the acknowledger, paged again
when their time ran out) and the alert carries a signed acknowledgement link for them; the local
round answers both, so the episode records who was paged."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from typing import Any, Protocol

import aiosmtplib
import httpx
from prometheus_client import Counter, Histogram
from temporalio import activity
from temporalio.exceptions import ApplicationError

from mispers.config import Settings
from mispers.domain.messages import (
    AddressAlertsInput,
    AddressedAlerts,
    AlertBatch,
    AlertDelivery,
    DeliverAlertsInput,
    DeliverAlertsOnceInput,
    Paged,
)
from mispers.domain.state import Alert
from mispers.domain.types import AlertState
from mispers.logs import get_logger
from mispers.rota import RotaFile
from mispers.security import ack_links

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

ACK_SECONDS = Histogram(
    "mispers_alert_time_to_ack_seconds",
    "Time from an alert's trigger to its acknowledgement, by the alert's rank.",
    ["rank"],
    buckets=(60, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400),
)
ACK_TIMEOUTS = Counter(
    "mispers_alert_ack_timeouts",
    "Acknowledgements that lapsed with the obligation open, re-triggering and re-escalating "
    "the alert, by the alert's rank.",
    ["rank"],
)
UNSTAFFED = Counter(
    "mispers_alerts_unstaffed",
    "Alerts for a rank the rota named nobody on duty for, by rank.",
    ["rank"],
)

# Only these fields leave the engine: ids, kinds, ranks, times and the officer paged; never
# child data.
ALERT_FIELDS = (
    "alert_id",
    "episode_id",
    "obligation_id",
    "kind",
    "due_at",
    "escalation_level",
    "rank",
    "raised_at",
    "scheduled_at",
    "state",
    "acknowledged_by",
    "acknowledged_at",
    "ack_expires_at",
    "resolved_at",
    "recipient",
    "unstaffed",
    "ack_url",
    "risk_level",
)


@dataclass(frozen=True)
class Notice:
    """One alert at one step of its lifecycle, as every sink receives it."""

    alert: Alert
    transition: AlertState
    reason: str | None = None

    def payload(self) -> dict[str, object]:
        data = self.alert.model_dump(mode="json")
        return {name: data[name] for name in ALERT_FIELDS} | {
            "transition": self.transition.value,
            "dedup_key": self.alert.alert_id,
            "reason": self.reason,
        }


def alert_payload(alert: Alert) -> dict[str, object]:
    return Notice(alert, AlertState.TRIGGERED).payload()


class AlertSink(Protocol):
    name: str

    async def send(self, notices: Sequence[Notice], sent: Sent) -> None:
        """Deliver `notices`, calling `sent` for each alert as soon as it is delivered."""


class LogSink:
    """Always on: the structured log is the sink of last resort."""

    name = "log"

    async def send(self, notices: Sequence[Notice], sent: Sent) -> None:
        for notice in notices:
            payload = notice.payload()
            payload.pop("ack_url")  # a credential: not for the log
            log.warning(f"alert {notice.transition.value}", **payload)
            sent(notice.alert)


class WebhookSink:
    """One JSON POST per alert; a 2xx answer is delivery, anything else is retried."""

    name = "webhook"

    def __init__(self, url: str, timeout: timedelta = SEND_TIMEOUT) -> None:
        self.url = url
        self._client = httpx.AsyncClient(timeout=timeout.total_seconds())

    async def send(self, notices: Sequence[Notice], sent: Sent) -> None:
        for notice in notices:
            response = await self._client.post(self.url, json=notice.payload())
            if not response.is_success:
                raise RuntimeError(f"webhook answered {response.status_code}")
            sent(notice.alert)


_SUBJECTS = {
    AlertState.TRIGGERED: "overdue obligation(s) on episode {episode}: escalated to {rank}",
    AlertState.ACKNOWLEDGED: "alert(s) on episode {episode} acknowledged",
    AlertState.RESOLVED: "alert(s) on episode {episode} resolved",
}


class EmailSink:
    """To the person the rota paged; to `MISPERS_ALERT_EMAIL_TO` when it named nobody."""

    name = "email"

    def __init__(self, host: str, port: int, sender: str, recipients: Sequence[str]) -> None:
        self.host, self.port, self.sender, self.recipients = host, port, sender, list(recipients)

    async def send(self, notices: Sequence[Notice], sent: Sent) -> None:
        by_address: dict[tuple[str, ...], list[Notice]] = {}
        for notice in notices:
            recipient = notice.alert.recipient
            to = (recipient.email,) if recipient else tuple(self.recipients)
            if to:
                by_address.setdefault(to, []).append(notice)
            else:
                sent(notice.alert)  # nobody to write to: nothing this sink owes
        for to, group in by_address.items():
            await aiosmtplib.send(
                self._message(to, group),
                hostname=self.host,
                port=self.port,
                timeout=SEND_TIMEOUT.total_seconds(),
            )
            for notice in group:  # one message carries the whole group
                sent(notice.alert)

    def _message(self, to: Sequence[str], notices: Sequence[Notice]) -> EmailMessage:
        message = EmailMessage()
        first = notices[0]
        message["From"] = self.sender
        message["To"] = ", ".join(to)
        subject = _SUBJECTS[first.transition].format(
            episode=first.alert.episode_id, rank=first.alert.rank.value
        )
        message["Subject"] = f"[Mispers] {len(notices)} {subject}"
        lines: list[str] = []
        for notice in notices:
            a = notice.alert
            lines.append(
                f"{a.alert_id}: {a.kind.value} due {a.due_at.isoformat()} — level "
                f"{a.escalation_level}, to the {a.rank.value} ({notice.transition.value})"
            )
            if a.unstaffed and notice.transition is AlertState.TRIGGERED:
                lines.append(f"  Nobody is on duty for the {a.rank.value} on the rota.")
            if notice.reason == "ack_timeout":
                lines.append("  The acknowledgement lapsed with the work undone: act now.")
            if a.ack_url and notice.transition is AlertState.TRIGGERED:
                lines.append(f"  Acknowledge: {a.ack_url}")
        message.set_content("\n".join(lines) + "\n")
        return message


class Pager:
    """Addresses triggered alerts: the person on duty (or the acknowledger paged again) and a
    signed link bound to them and to the alert."""

    def __init__(self, rota: RotaFile, secret: bytes | None, public_url: str) -> None:
        self.rota, self.secret, self.public_url = rota, secret, public_url

    def address(self, alert: Alert, notify: str | None) -> Paged:
        on_duty = self.rota.on_duty(alert.rank, alert.raised_at)
        unstaffed = self.rota.path is not None and on_duty is None
        recipient = (self.rota.person(notify) if notify else None) or on_duty
        if self.secret is None:
            return Paged(recipient=recipient, unstaffed=unstaffed)
        link = ack_links.AckLink(
            alert_id=alert.alert_id,
            person_id=recipient.person_id if recipient else (notify or f"on-call:{alert.rank}"),
            rank=alert.rank,
            expires_at=max(alert.raised_at, dt.datetime.now(dt.UTC)) + ack_links.LIFETIME,
        )
        url = ack_links.url(self.public_url, self.secret, link)
        return Paged(recipient=recipient, ack_url=url, unstaffed=unstaffed)


def sinks_from_settings(settings: Settings) -> list[AlertSink]:
    sinks: list[AlertSink] = [LogSink()]
    if settings.alert_webhook_url:
        sinks.append(WebhookSink(settings.alert_webhook_url))
    if settings.smtp_host and (settings.alert_email_to or settings.rota):
        sinks.append(
            EmailSink(
                settings.smtp_host,
                settings.smtp_port,
                settings.alert_email_from,
                settings.alert_email_to,
            )
        )
    if settings.pagerduty_routing_key:
        from activities.pagerduty import PagerDutySink

        sinks.append(PagerDutySink(settings.pagerduty_routing_key, settings.pagerduty_url))
    return sinks


def pager_from_settings(settings: Settings) -> Pager:
    from mispers.api.auth import load_secret

    return Pager(RotaFile(settings.rota), load_secret(settings), settings.effective_public_url)


class AlertActivities:
    def __init__(self, sinks: Sequence[AlertSink], pager: Pager | None = None) -> None:
        self._sinks = list(sinks)
        self._pager = pager or Pager(RotaFile(None), None, "")

    @activity.defn
    async def deliver_alerts(self, input: DeliverAlertsInput) -> list[str]:
        """Returns the sinks that took the batch; raises (to retry) while any has not."""
        info = activity.info()
        details = info.heartbeat_details
        progress = Progress.resume(details[0] if details else None, input.done)
        if info.attempt == 1 and not details and not input.counted:
            _count_raised(input.batch)
        failed = await self._round(input.batch, progress, heartbeat=True, paged=input.paged)
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
        paged = input.paged
        if paged is None:  # the round addresses the batch itself (or an episode from before
            # alerts were addressed first): its answer carries who was paged
            paged = self._address(input.batch)
            if activity.info().attempt == 1:
                _count_unstaffed(input.batch, paged)
        failed = await self._round(input.batch, progress, heartbeat=False, paged=paged)
        delivered = [sink.name for sink in self._sinks if sink.name in progress.done]
        return AlertDelivery(delivered=delivered, failed=failed, paged=paged)

    @activity.defn
    async def address_alerts(self, input: AddressAlertsInput) -> AddressedAlerts:
        """Who is paged for each triggered alert and the signed link they get: the rota and
        the secret are read here, and the answer is a fact the episode records before any
        sink is tried, so a delivery that fails or crashes never leaves it unknown."""
        paged = self._address(input.batch)
        if activity.info().attempt == 1:
            _count_unstaffed(input.batch, paged)
        return AddressedAlerts(paged=paged)

    def _address(self, batch: AlertBatch) -> dict[str, Paged]:
        if batch.transition is not AlertState.TRIGGERED:
            return {}
        return {a.alert_id: self._pager.address(a, batch.notify) for a in batch.alerts}

    async def _round(
        self,
        batch: AlertBatch,
        progress: Progress,
        heartbeat: bool,
        paged: dict[str, Paged] | None = None,
    ) -> list[str]:
        """Send to every sink not done the alerts it has not taken; answer the sinks that
        failed. With `heartbeat`, every alert taken is reported at once, with the progress."""

        def report() -> None:
            if heartbeat:
                activity.heartbeat(progress.details())

        failed: list[str] = []
        if paged is None:
            paged = self._address(batch)
        notices = _notices(batch, paged)
        for sink in self._sinks:
            if sink.name in progress.done:
                continue
            taken = progress.sent.setdefault(sink.name, [])

            def sent(alert: Alert, taken: list[str] = taken) -> None:
                taken.append(alert.alert_id)
                report()

            try:
                await sink.send([n for n in notices if n.alert.alert_id not in taken], sent)
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


def _notices(batch: AlertBatch, paged: dict[str, Paged]) -> list[Notice]:
    transition = batch.transition or AlertState.TRIGGERED
    notices: list[Notice] = []
    for alert in batch.alerts:
        address = paged.get(alert.alert_id)
        if address is not None:
            alert = alert.model_copy(
                update={
                    "recipient": address.recipient,
                    "ack_url": address.ack_url,
                    "unstaffed": address.unstaffed,
                }
            )
        notices.append(Notice(alert, transition, batch.reason))
    return notices


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
        rank = alert.rank.value
        if batch.transition is None or (
            batch.transition is AlertState.TRIGGERED and batch.reason is None
        ):
            ALERTS_RAISED.labels(rank=rank).inc()
        elif batch.transition is AlertState.TRIGGERED:
            ACK_TIMEOUTS.labels(rank=rank).inc()
        elif batch.transition is AlertState.ACKNOWLEDGED and alert.acknowledged_at:
            waited = (alert.acknowledged_at - alert.raised_at).total_seconds()
            ACK_SECONDS.labels(rank=rank).observe(max(waited, 0.0))


def _count_unstaffed(batch: AlertBatch, paged: dict[str, Paged]) -> None:
    if batch.reason is not None:
        return
    for alert in batch.alerts:
        if paged.get(alert.alert_id, Paged()).unstaffed:
            UNSTAFFED.labels(rank=alert.rank.value).inc()
