"""Signed acknowledgement links: what an e-mail or webhook carries so the person paged can take
the alert in one click, without a token.

The link is an HMAC (SHA-256, the service's token secret, its own context string) over the
alert, the person it was sent to, the rank it paged and when it stops working, so it cannot be
moved to another alert or person, nor altered, nor used after it lapses. An alert that is
resolved refuses it as well: the link expires with the alert.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass
from urllib.parse import quote

from mispers.domain.types import Rank

CONTEXT = b"mispers-ack-link\0"
# A cap beside the alert's own end: a link lying in a mailbox does not work for ever.
LIFETIME = dt.timedelta(days=7)
PATH = "/ack"


class LinkRefused(Exception):
    """Why a link is not honoured, in words for the page; `code` for the counters."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AckLink:
    alert_id: str
    person_id: str
    rank: Rank
    expires_at: dt.datetime


def sign(secret: bytes, link: AckLink) -> str:
    payload = json.dumps(
        {
            "a": link.alert_id,
            "p": link.person_id,
            "r": link.rank.value,
            "e": int(link.expires_at.timestamp()),
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"


def url(base: str, secret: bytes, link: AckLink) -> str:
    return f"{base.rstrip('/')}{PATH}?token={quote(sign(secret, link))}"


def verify(secret: bytes, token: str, now: dt.datetime) -> AckLink:
    """The link's claims, or LinkRefused saying why (forged, altered, malformed, expired)."""
    body, dot, mac = token.partition(".")
    if not dot:
        raise LinkRefused("malformed", "This link is incomplete: copy the whole link.")
    try:
        payload, given = _unb64(body), _unb64(mac)
    except (binascii.Error, ValueError):
        raise LinkRefused("malformed", "This link is damaged: copy the whole link.") from None
    if not hmac.compare_digest(given, _mac(secret, payload)):
        raise LinkRefused(
            "forged",
            "This link was not issued by this service, or it was altered: it does not "
            "acknowledge anything.",
        )
    try:
        claims = json.loads(payload)
        link = AckLink(
            alert_id=str(claims["a"]),
            person_id=str(claims["p"]),
            rank=Rank(claims["r"]),
            expires_at=dt.datetime.fromtimestamp(int(claims["e"]), dt.UTC),
        )
    except (KeyError, ValueError, TypeError):
        raise LinkRefused("malformed", "This link is damaged: copy the whole link.") from None
    if now >= link.expires_at:
        raise LinkRefused(
            "expired",
            f"This link expired at {link.expires_at:%Y-%m-%d %H:%M} UTC: use the service "
            "or a newer alert to acknowledge.",
        )
    return link


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, CONTEXT + payload, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
