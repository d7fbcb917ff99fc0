"""The dashboard session: a signed cookie holding who signed in, their rank and purpose, and the
CSRF token of their forms. Nothing is kept server-side, so API replicas sharing the token secret
share sessions; the signature (HMAC-SHA256 under a key derived from that secret) stops edits.

The cookie is re-issued on every page with a new `seen` time and dropped once idle for longer
than `MISPERS_UI_IDLE_MINUTES`: the expiry is an idle one, checked here, not by the browser."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time

from pydantic import BaseModel, ConfigDict, ValidationError

from mispers.web.identity import UiUser

COOKIE = "mispers_ui"
COOKIE_PATH = "/ui"


class Session(BaseModel):
    model_config = ConfigDict(frozen=True)

    user: UiUser
    csrf: str
    signed_in_at: dt.datetime
    seen_at: dt.datetime

    @classmethod
    def start(cls, user: UiUser, now: dt.datetime) -> Session:
        return cls(user=user, csrf=secrets.token_urlsafe(32), signed_in_at=now, seen_at=now)

    def touched(self, now: dt.datetime) -> Session:
        return self.model_copy(update={"seen_at": now})

    def with_purpose(self, purpose: str) -> Session:
        return self.model_copy(update={"user": self.user.model_copy(update={"purpose": purpose})})

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf, token or "")


def _key(secret: bytes) -> bytes:
    return hmac.new(secret, b"mispers-ui-session", hashlib.sha256).digest()


def seal(secret: bytes, session: Session) -> str:
    body = base64.urlsafe_b64encode(session.model_dump_json().encode()).decode().rstrip("=")
    mac = hmac.new(_key(secret), body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def unseal(
    secret: bytes, cookie: str | None, now: dt.datetime, idle: dt.timedelta
) -> Session | None:
    """The session in the cookie; None when there is none, it was not ours, or it went idle."""
    if not cookie or "." not in cookie:
        return None
    body, _, mac = cookie.rpartition(".")
    expected = hmac.new(_key(secret), body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, expected):
        return None
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        session = Session.model_validate(json.loads(raw))
    except (binascii.Error, ValueError, ValidationError):
        return None
    if now - session.seen_at > idle:
        return None
    return session


def flow_seal(secret: bytes, payload: str, ttl: int) -> str:
    """A short-lived signed value (the OIDC flow's secrets between start and callback)."""
    body = json.dumps({"p": payload, "exp": int(time.time()) + ttl})
    encoded = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
    mac = hmac.new(_flow_key(secret), encoded.encode(), hashlib.sha256).hexdigest()
    return f"{encoded}.{mac}"


def flow_open(secret: bytes, value: str | None) -> str | None:
    if not value or "." not in value:
        return None
    encoded, _, mac = value.rpartition(".")
    expected = hmac.new(_flow_key(secret), encoded.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, expected):
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(body, dict) or int(body.get("exp", 0)) < time.time():
        return None
    payload = body.get("p")
    return payload if isinstance(payload, str) else None


def _flow_key(secret: bytes) -> bytes:
    return hmac.new(secret, b"mispers-ui-oidc-flow", hashlib.sha256).digest()
